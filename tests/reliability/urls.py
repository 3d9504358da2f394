from __future__ import annotations

from django.urls import path

from tests.reliability import views

urlpatterns = [
    path("charges/", views.charge),
    path("lease-charges/", views.charge_lease),
    path("raw/", views.raw),
    path("echo/", views.echo),
    path("health/", views.health),
]
