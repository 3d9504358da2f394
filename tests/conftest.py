from __future__ import annotations

import logging

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.helpers import SignedInClient
from tests.testapp import views


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"django-idempotency database: {db['ENGINE']} {db.get('HOST') or ''} {db.get('NAME')}"


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    vendor = connection.vendor
    for item in items:
        if item.get_closest_marker("needs_row_locks") and vendor not in ("postgresql", "mysql"):
            item.add_marker(
                pytest.mark.skip(
                    reason=f"row-lock guarantee: proven on PostgreSQL and MariaDB, not {vendor}"
                )
            )
        if item.get_closest_marker("redis") and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis: REDIS_URL is not set"))
        if item.get_closest_marker("postgresql") and vendor != "postgresql":
            item.add_marker(pytest.mark.skip(reason=f"needs PostgreSQL, not {vendor}"))


@pytest.fixture(autouse=True)
def _reset_executions():
    views.executions.clear()
    yield
    views.executions.clear()


@pytest.fixture
def events(caplog):
    """Return the ``idempotency`` payloads of the records logged on the app's logger."""
    caplog.set_level(logging.DEBUG, logger="django_idempotency")

    def logged() -> list[dict]:
        return [
            r.idempotency
            for r in caplog.records
            if r.name == "django_idempotency" and hasattr(r, "idempotency")
        ]

    return logged


@pytest.fixture
def client():
    return SignedInClient()


@pytest.fixture
def anonymous_client():
    return APIClient()
