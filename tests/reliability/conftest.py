"""Fixtures of the reliability suite: a gunicorn on the test database, and Basic-auth users."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import connections

from tests.reliability.server import Server, database_url

#: Sync workers of the shared server: enough for real concurrency on a two-core machine.
WORKERS = 4
PASSWORD = "reliability"


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory) -> Iterator[Server]:
    """A gunicorn with ``WORKERS`` sync workers serving ``tests.reliability.urls``.

    It uses the test database pytest-django created; tests that read what it wrote need
    ``transactional_db`` (committed data), which also empties the tables after each test.
    """
    directory = tmp_path_factory.mktemp("gunicorn")
    reports = directory / "reports"
    reports.mkdir()
    running = Server(
        database_url(connections["default"].settings_dict),
        workers=WORKERS,
        report_dir=reports,
        log=directory / "gunicorn.log",
    )
    try:
        yield running
    finally:
        running.stop()


def basic_auth(username: str) -> str:
    """Return the Authorization header value for ``username``."""
    token = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return f"Basic {token}"


@pytest.fixture
def make_user(transactional_db):
    """Return a function that creates a committed user and returns its Authorization header."""

    def make(username: str) -> str:
        User.objects.create_user(username, password=PASSWORD)
        return basic_auth(username)

    return make
