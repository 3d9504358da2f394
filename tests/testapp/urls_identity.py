"""Routes for the identity tests; two patterns differ only in the case of one letter."""

from __future__ import annotations

from django.urls import path

from tests.testapp import views_identity

urlpatterns = [
    path("api/charges/", views_identity.identity_charge),
    path("api/Charges/", views_identity.identity_charge),
    path("api/tenant/", views_identity.tenant_charge),
]
