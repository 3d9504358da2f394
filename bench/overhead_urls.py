"""The example project's URLs plus the charge create with an optional key, for no-key requests.

The example requires a key on every idempotent endpoint; requests without one would be refused
with 400 before any work, which measures nothing. ``OptionalKeyChargeViewSet`` is the example's
``ChargeViewSet`` with ``idempotency_required = False``: the same view, serializer and work.
"""

from __future__ import annotations

from django.urls import include, path
from payments.views import ChargeViewSet
from rest_framework.routers import DefaultRouter


class OptionalKeyChargeViewSet(ChargeViewSet):
    """The idempotent charge create; a request without a key runs unprotected."""

    idempotency_required = False


router = DefaultRouter()
router.register("optional-key-charges", OptionalKeyChargeViewSet, basename="optional-key-charge")

urlpatterns = [path("bench/", include(router.urls)), path("", include("example.urls"))]
