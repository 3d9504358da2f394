"""URLs of the payments API, mounted under ``/api/``."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from payments.views import ChargeViewSet, PayoutViewSet, PlainChargeViewSet, create_refund

router = DefaultRouter()
router.register("charges", ChargeViewSet, basename="charge")
router.register("payouts", PayoutViewSet, basename="payout")
router.register("plain-charges", PlainChargeViewSet, basename="plain-charge")

urlpatterns = [
    path("refunds/", create_refund, name="refund-create"),
    *router.urls,
]
