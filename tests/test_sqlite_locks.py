"""SQLite has no row locks: a locked database is answered 409, never 503 or 500."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection

from tests.helpers import SignedInClient, assert_problem, post, signed_in_user
from tests.testapp import views

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's database lock"),
]


@pytest.mark.parametrize("url", ["/api/charges/", "/api/lease/"])
def test_a_database_locked_by_another_writer_is_409_in_progress(url):
    connection.ensure_connection()
    client = SignedInClient()
    # Before the lock: the user is read from the database.
    client.force_authenticate(signed_in_user())
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0)
    # An exclusive lock keeps even readers out, as a shared-cache database's table lock does:
    # the key lookup itself is refused after the busy timeout.
    other.execute("BEGIN EXCLUSIVE")
    try:
        response = post(client, url, {"amount": 1}, key="k")
    finally:
        other.rollback()
        other.close()
    body = assert_problem(response, 409, "in-progress")
    # The lock is the whole database's: it says nothing about this key, and the answer says so.
    assert "Idempotency-Key" not in body["detail"]
    assert "database is busy" in body["detail"]
    assert sum(views.executions.values()) == 0
    assert post(SignedInClient(), url, {"amount": 1}, key="k").status_code == 201
