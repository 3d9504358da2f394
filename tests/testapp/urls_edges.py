"""Routes for the transaction edge tests, plus the main test URLconf."""

from __future__ import annotations

from django.urls import include, path

from tests.testapp import views_edges

urlpatterns = [
    path("edges/ddl-raise/", views_edges.ddl_then_raise),
    path("edges/ddl-lose/", views_edges.ddl_then_lose_record),
    path("edges/swallow/", views_edges.swallow_error),
    path("edges/savepoint/", views_edges.swallow_error_in_savepoint),
    path("", include("tests.testapp.urls")),
]
