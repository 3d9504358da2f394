"""Transaction edges: strict isolation levels, DDL inside a view, views that swallow database errors.

Real databases, real threads on their own connections; time moves through ``IDEMPOTENCY_CLOCK``.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyKey
from tests.helpers import post
from tests.test_concurrency import (
    URL,
    Outcome,
    assert_in_progress,
    assert_no_server_error,
    assert_replay_of,
    patched_database_settings,
    repeatable_read,
    request,
    run_together,
    send,
)
from tests.testapp import views, views_edges
from tests.testapp.models import Charge

REPLAYED = "Idempotent-Replayed"
#: Concurrent duplicates per round, and rounds: today at least one round of 16 meets the race
#: (a 500 at COMMIT) in nearly every run, and the whole test takes about a second.
BURST = 16
ROUNDS = 4


def serializable() -> object:
    """Return the SERIALIZABLE value of the ``isolation_level`` option for this backend."""
    if connection.vendor == "postgresql":
        from psycopg import IsolationLevel

        return IsolationLevel.SERIALIZABLE
    return "serializable"


# 1. Strict isolation levels with ATOMIC_REQUESTS ---------------------------------------------


@pytest.mark.needs_row_locks
@pytest.mark.timeout(60)
class TestStrictIsolationUnderAtomicRequests(TransactionTestCase):
    """Concurrent duplicates in ATOMIC_REQUESTS transactions at a strict isolation level.

    A serialization failure (PostgreSQL 40001) or a deadlock on the claim must answer 409 or be
    retried; it must never turn a request into a 500, nor let a late duplicate run the view.
    """

    def setUp(self) -> None:
        views.executions.clear()
        patch = patched_database_settings("ATOMIC_REQUESTS", True)
        patch.__enter__()
        self.addCleanup(patch.__exit__, None, None, None)
        self.user = User.objects.create_user("isolation")

    def burst(self, isolation_level: object) -> None:
        """Send rounds of simultaneous duplicates (one key per round) at ``isolation_level``.

        The view returns at once, so the duplicates' transactions overlap the first one's commit:
        that is when PostgreSQL's SERIALIZABLE finds its read/write dependencies.
        """
        with patched_database_settings("isolation_level", isolation_level, option=True):
            for round_ in range(ROUNDS):
                views.executions.clear()
                key = f"burst-{round_}"
                calls = [request(URL, {"amount": 5}, key, user=self.user)] * BURST
                original = assert_executed_once(run_together(calls), key)
                assert_replay_of(send(URL, {"amount": 5}, key, user=self.user), original)
                assert views.executions["api_charge"] == 1
        assert Charge.objects.count() == ROUNDS

    def test_serializable_executes_once_without_a_server_error(self):
        self.burst(serializable())

    def test_repeatable_read_executes_once_without_a_server_error(self):
        self.burst(repeatable_read())


def assert_executed_once(outcomes: list[Outcome], key: str) -> Outcome:
    """Assert no 5xx, one execution, and that every other answer replays it or is a 409."""
    assert_no_server_error(outcomes)
    executed = [o for o in outcomes if 200 <= o.status < 300 and not o.replayed]
    assert len(executed) == 1, outcomes
    (original,) = executed
    assert original.status == 201
    assert views.executions["api_charge"] == 1, views.executions
    for outcome in outcomes:
        if outcome.replayed:
            assert_replay_of(outcome, original)
        elif outcome is not original:
            assert_in_progress(outcome)
            assert not outcome.charge_insert_depths
    record = IdempotencyKey.objects.get(key=key)
    assert (record.status, bytes(record.response_body)) == ("completed", original.content)
    return original


# 2. DDL inside a view (MariaDB/MySQL commit it implicitly) -----------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):
        return self.now

    def move_past(self, *moments) -> None:
        self.now = max([self.now, *(m for m in moments if m is not None)]) + timedelta(seconds=1)


@pytest.fixture
def clock(settings):
    clock = Clock()
    settings.IDEMPOTENCY_CLOCK = clock
    return clock


@pytest.fixture
def user():
    return User.objects.create_user("edges")


@pytest.fixture
def api(user):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    return client


@pytest.fixture
def scratch_table():
    yield
    views_edges.drop_scratch_table()


@pytest.fixture
def events(caplog):
    """Return the (level, payload) of each event record logged on the app's logger."""
    caplog.set_level(logging.DEBUG, logger="django_idempotency")

    def logged() -> list[tuple[int, dict]]:
        return [
            (record.levelno, record.idempotency)
            for record in caplog.records
            if record.name == "django_idempotency" and hasattr(record, "idempotency")
        ]

    return logged


mysql_only = pytest.mark.skipif(
    connection.vendor != "mysql",
    reason=f"DDL commits implicitly on MariaDB/MySQL only, not on {connection.vendor}",
)
DDL_URL = "/edges/ddl-raise/"


def fail_after_ddl(api, key: str):
    response = post(api, DDL_URL, {"amount": 5, "fail": True}, key=key)
    assert response.status_code == 500
    assert REPLAYED not in response
    return IdempotencyKey.objects.filter(key=key).first()


@mysql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.testapp.urls_edges")
@pytest.mark.usefixtures("scratch_table")
class TestDDLInAView:
    def test_a_claim_committed_by_ddl_expires_and_is_purged(self, api, clock):
        record = fail_after_ddl(api, "ddl-1")
        if record is None:
            return  # the engine removed the committed claim itself: nothing is burned
        assert record.status == "in_progress"
        assert record.expires_at is not None, "an in-progress record without an expiry"
        clock.move_past(record.expires_at, record.lease_expires_at)
        assert IdempotencyKey.objects.purge_expired(now=clock.now) == 1
        assert not IdempotencyKey.objects.filter(key="ddl-1").exists()

    def test_a_retry_after_the_claim_expired_runs_the_view(self, api, clock):
        record = fail_after_ddl(api, "ddl-2")
        if record is not None:
            assert record.expires_at is not None, "an in-progress record without an expiry"
            clock.move_past(record.expires_at, record.lease_expires_at)
        retry = post(api, DDL_URL, {"amount": 5}, key="ddl-2")
        assert retry.status_code == 201, retry.content
        assert REPLAYED not in retry
        assert views.executions["ddl_then_raise"] == 2
        record = IdempotencyKey.objects.get(key="ddl-2")
        assert record.status == "completed"
        assert bytes(record.response_body) == retry.content
        assert_replay_of_response(post(api, DDL_URL, {"amount": 5}, key="ddl-2"), retry)
        assert views.executions["ddl_then_raise"] == 2

    def test_a_record_lost_before_completion_is_not_logged_as_executed(self, api, events):
        response = post(api, "/edges/ddl-lose/", {"amount": 5}, key="ddl-3")
        # The view's response still reaches the client: its work is done and committed.
        assert response.status_code == 201, response.content
        assert REPLAYED not in response
        assert Charge.objects.filter(pk=json.loads(response.content)["id"]).exists()
        ((level, event),) = events()
        assert event["decision"] != "executed", event
        assert level >= logging.WARNING, event
        assert not IdempotencyKey.objects.filter(key="ddl-3", status="completed").exists()


def assert_replay_of_response(replay, original) -> None:
    assert replay[REPLAYED] == "true"
    assert replay.status_code == original.status_code
    assert replay.content == original.content


# 3. Views that swallow database errors --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.testapp.urls_edges")
class TestViewsThatSwallowDatabaseErrors:
    @pytest.mark.postgresql
    def test_an_aborted_transaction_answers_a_problem_and_frees_the_key(self, api):
        # Without a key the view runs in autocommit: its tolerated error is harmless.
        plain = post(api, "/edges/swallow/")
        assert plain.status_code == 201, plain.content
        assert Charge.objects.count() == 1
        for attempt in (1, 2):
            response = post(api, "/edges/swallow/", key="swallowed")
            # A documented limit (as with ATOMIC_REQUESTS): PostgreSQL aborted the transaction
            # the claim lives in, so nothing can be stored; the engine says so as a problem.
            assert response.status_code == 500, response.content
            assert response["Content-Type"] == "application/problem+json"
            body = json.loads(response.content)
            assert body["type"].endswith("transaction-aborted"), body
            assert body["status"] == 500
            assert REPLAYED not in response
            # No record: the key stays free, and the retry ran the view again.
            assert not IdempotencyKey.objects.exists()
            assert views.executions["swallow_error"] == 1 + attempt
        # Only the unkeyed request's write was kept.
        assert Charge.objects.count() == 1

    def test_an_error_tolerated_inside_a_savepoint_is_stored_and_replayed(self, api):
        first = post(api, "/edges/savepoint/", key="savepoint")
        assert first.status_code == 201, first.content
        assert REPLAYED not in first
        replay = post(api, "/edges/savepoint/", key="savepoint")
        assert_replay_of_response(replay, first)
        assert views.executions["swallow_error_in_savepoint"] == 1
        assert Charge.objects.count() == 1
        record = IdempotencyKey.objects.get()
        assert (record.status, bytes(record.response_body)) == ("completed", first.content)
