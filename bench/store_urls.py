"""The bench's views: one DRF view body, bare and under each store and mode measured."""

from __future__ import annotations

from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent
from tests.testapp.models import Charge


def create_charge(request: Request) -> Response:
    """Write one row and answer 201 with it, as a typical create endpoint does."""
    charge = Charge.objects.create(amount=int(request.data.get("amount", 0)), note="bench")
    return Response({"id": charge.pk, "amount": charge.amount}, status=201)


plain = api_view(["POST"])(create_charge)
database_atomic = api_view(["POST"])(idempotent(mode="atomic", store="database")(create_charge))
database_lease = api_view(["POST"])(idempotent(mode="lease", store="database")(create_charge))
cache_lease = api_view(["POST"])(idempotent(mode="lease", store="cache")(create_charge))

urlpatterns = [
    path("plain/", plain),
    path("database-atomic/", database_atomic),
    path("database-lease/", database_lease),
    path("cache-lease/", cache_lease),
]
