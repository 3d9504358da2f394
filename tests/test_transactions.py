"""The record commits exactly when the view's writes commit: ATOMIC_REQUESTS, rollbacks, routers."""

from __future__ import annotations

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory
from tests.helpers import assert_problem, post, signed_in_scope, signed_in_user
from tests.testapp import views
from tests.testapp.models import Charge

URL = "/api/charges/"


@pytest.fixture(params=[False, True], ids=["ATOMIC_REQUESTS off", "ATOMIC_REQUESTS on"])
def atomic_requests(request):
    settings_dict = connections.settings["default"]
    previous = settings_dict["ATOMIC_REQUESTS"]
    settings_dict["ATOMIC_REQUESTS"] = connection.settings_dict["ATOMIC_REQUESTS"] = request.param
    yield request.param
    settings_dict["ATOMIC_REQUESTS"] = connection.settings_dict["ATOMIC_REQUESTS"] = previous


@pytest.mark.django_db(transaction=True)
class TestCommitsWithTheView:
    def test_success_commits_record_and_writes(self, client, atomic_requests):
        post(client, URL, {"amount": 5}, key="k")
        assert post(client, URL, {"amount": 5}, key="k")["Idempotent-Replayed"] == "true"
        assert Charge.objects.count() == 1
        assert IdempotencyKey.objects.get().status == "completed"

    def test_an_exception_leaves_neither(self, client, atomic_requests):
        client.raise_request_exception = False
        assert post(client, URL, {"amount": 5, "fail": "raise"}, key="k").status_code == 500
        assert (Charge.objects.count(), IdempotencyKey.objects.count()) == (0, 0)
        assert post(client, URL, {"amount": 5}, key="k").status_code == 201
        assert Charge.objects.count() == 1

    def test_an_unstored_status_leaves_neither(self, client, atomic_requests):
        assert post(client, URL, {"amount": 5, "fail": "500"}, key="k").status_code == 500
        assert (Charge.objects.count(), IdempotencyKey.objects.count()) == (0, 0)

    def test_drf_exception_handler_rollback_leaves_nothing(self, client, atomic_requests):
        assert post(client, "/api/serializer/", {"amount": 0}, key="k").status_code == 400
        assert IdempotencyKey.objects.count() == 0
        assert post(client, "/api/serializer/", {"amount": 2}, key="k").status_code == 201
        assert IdempotencyKey.objects.count() == 1

    def test_a_response_from_a_transaction_marked_for_rollback_is_not_stored(
        self, client, atomic_requests
    ):
        response = post(client, URL, {"amount": 5, "rollback": True}, key="k")
        assert response.status_code == 201
        assert (Charge.objects.count(), IdempotencyKey.objects.count()) == (0, 0)
        post(client, URL, {"amount": 5}, key="k")
        assert views.executions["api_charge"] == 2
        assert Charge.objects.count() == 1

    def test_plain_views_opting_out_of_atomic_requests(self, client, atomic_requests):
        url = "/plain/charges/"
        client.post(url, {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k")
        again = client.post(url, {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db(transaction=True)
def test_query_budget(client):
    client.force_authenticate(signed_in_user())
    with CaptureQueriesContext(connection) as first:
        post(client, URL, {"amount": 5}, key="k")
    with CaptureQueriesContext(connection) as replay:
        post(client, URL, {"amount": 5}, key="k")
    # The lock bound rides on the claim statement itself: MariaDB's SET STATEMENT ... FOR
    # INSERT, PostgreSQL's INSERT that sets it in a CTE and restores it in its RETURNING.
    expected = ["SELECT", "BEGIN", "INSERT", "UPDATE", "COMMIT"]
    assert kinds(first.captured_queries) == expected
    assert kinds(replay.captured_queries) == ["SELECT"], "a replay is one indexed lookup"
    assert "WHERE" in replay.captured_queries[0]["sql"]


@pytest.mark.django_db(transaction=True)
@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=None)
def test_no_lock_bound_means_no_extra_statements(client):
    client.force_authenticate(signed_in_user())
    with CaptureQueriesContext(connection) as first:
        post(client, URL, {"amount": 5}, key="k")
    assert kinds(first.captured_queries) == ["SELECT", "BEGIN", "INSERT", "UPDATE", "COMMIT"]


def kinds(queries):
    """Return what each statement the app issued does; the view's own INSERT is left out."""
    result = []
    for query in queries:
        sql = query["sql"]
        if "testapp_charge" in sql:
            continue
        if sql.startswith("SET STATEMENT innodb_lock_wait_timeout="):
            result.append(sql.split(" FOR ", 1)[1].split()[0].upper())
        elif sql.startswith("WITH bound AS MATERIALIZED"):
            result.append("INSERT")
        elif (
            "set_config('lock_timeout', %s" in sql
            or "lock_timeout'), set_config" in sql
            or "= @@SESSION" in sql
        ):
            result.append("SET LOCK TIMEOUT")
        elif "set_config('lock_timeout'" in sql or "= @django_idempotency_lock_wait" in sql:
            result.append("RESTORE LOCK TIMEOUT")
        else:
            result.append(sql.split()[0].upper())
    return result


@pytest.mark.django_db
def test_an_expired_record_is_taken_over_by_one_conditional_update(client):
    IdempotencyKeyFactory(expired=True, scope=signed_in_scope("POST", "api/charges"), key="k")
    client.force_authenticate(signed_in_user())
    with CaptureQueriesContext(connection) as captured:
        assert post(client, URL, {"amount": 5}, key="k").status_code == 201
    # The UPDATE waits for a transaction holding the row, then checks it is still free.
    takeovers = [
        q["sql"] for q in captured.captured_queries if "<=" in q["sql"] and "UPDATE" in q["sql"]
    ]
    assert len(takeovers) == 1
    assert IdempotencyKey.objects.get().status == "completed"


@pytest.mark.django_db(databases=["default", "other"], transaction=True)
@override_settings(DATABASE_ROUTERS=["tests.routers.KeysOnOtherDatabase"])
def test_records_follow_the_routers_write_alias(client):
    post(client, URL, {"amount": 5}, key="k")
    assert post(client, URL, {"amount": 5}, key="k")["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.using("other").count() == 1
    assert IdempotencyKey.objects.using("default").count() == 0


@pytest.fixture
def unreachable_database(django_db_blocker, tmp_path):
    """Add an alias whose database cannot be opened: a real connection failure, not a mock.

    The test touches no other database (an anonymous request fails before its view runs), so it
    runs outside pytest-django's test transaction, with only this alias unblocked in effect.
    """
    connections.settings["unreachable"] = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(tmp_path / "missing-directory" / "keys.sqlite3"),
        "OPTIONS": {},
    }
    with django_db_blocker.unblock():
        yield
    connections["unreachable"].close()
    del connections["unreachable"]
    del connections.settings["unreachable"]


@override_settings(DATABASE_ROUTERS=["tests.routers.KeysOnUnreachableDatabase"])
def test_an_unreachable_store_fails_closed(client, unreachable_database):
    response = post(client, URL, {"amount": 5}, key="k")
    body = assert_problem(response, 503, "storage-unavailable")
    assert body["code"] == "idempotency_storage_unavailable"
    assert response["Retry-After"] == "1"
    assert views.executions["api_charge"] == 0


@pytest.mark.django_db
@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("level", "serializable"),
    [("READ_COMMITTED", False), ("REPEATABLE_READ", False), ("SERIALIZABLE", True)],
)
def test_serializable_is_told_apart_from_the_other_isolation_levels(level, serializable):
    """Only SERIALIZABLE has duplicates roll their transaction back (psycopg numbers levels its own way)."""
    from psycopg import IsolationLevel

    from django_idempotency.stores.locking import is_serializable

    options = {**connection.settings_dict["OPTIONS"], "isolation_level": IsolationLevel[level]}
    wrapper = type(connections[DEFAULT_DB_ALIAS])({**connection.settings_dict, "OPTIONS": options})
    try:
        wrapper.ensure_connection()
        assert is_serializable(wrapper) is serializable
    finally:
        wrapper.close()
