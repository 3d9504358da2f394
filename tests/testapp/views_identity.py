"""Views for the identity tests: keys, custom scopes and routes that differ only in case, accents or spaces."""

from __future__ import annotations

from rest_framework.decorators import api_view

from django_idempotency import idempotent
from tests.testapp.views import perform


def tenant_scope(request) -> str:
    """Return the tenant named by the ``X-Tenant`` header: the whole scope of the key."""
    return request.headers.get("X-Tenant", "")


@api_view(["POST"])
@idempotent
def identity_charge(request):
    return perform("identity_charge", request.data, request.user)


@api_view(["POST"])
@idempotent(scope=tenant_scope)
def tenant_charge(request):
    return perform("tenant_charge", request.data, request.user)
