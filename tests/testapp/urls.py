from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter
from rest_framework.urlpatterns import format_suffix_patterns

from tests.testapp import views

router = DefaultRouter()
router.register("viewset/charges", views.ChargeViewSet, basename="viewset-charge")
router.register("viewset/plain", views.PlainViewSet, basename="viewset-plain")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/charges/", views.api_charge),
    path("api/charges/<int:account>/", views.api_charge),
    path("api/charges-other/", views.api_charge),
    path("api/required/", views.api_charge_required),
    path("api/authenticated/", views.api_charge_authenticated),
    path("api/throttled/", views.api_charge_throttled),
    path("api/custom/", views.api_charge_custom),
    path("api/secret/", views.api_charge_secret),
    path("api/exclude/", views.api_charge_exclude),
    path("api/key-only/", views.api_charge_key_only),
    path("api/no-anonymous/", views.api_charge_no_anonymous),
    path("api/nowait/", views.api_charge_nowait),
    path("api/serializer/", views.api_charge_serializer),
    path("api/lease/", views.api_charge_lease),
    path("api/lease-wait/", views.api_charge_lease_wait),
    path("api/lease-heartbeat/", views.api_charge_lease_heartbeat),
    path("api/lease-short/", views.api_charge_lease_short),
    path("apiview/charges/", views.ChargeAPIView.as_view()),
    path("plain/charges/", views.plain_charge),
    path("", include(router.urls)),
    *format_suffix_patterns([path("api/suffixed/", views.api_charge)]),
]
