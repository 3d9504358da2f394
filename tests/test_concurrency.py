"""Concurrent duplicates on a real database: real threads, one connection and one client each.

The row-lock guarantees (exactly one execution, no 5xx, waiters replay or get 409) are proven on
PostgreSQL and MariaDB; SQLite serializes writers and must answer 409, never 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import TransactionTestCase, override_settings
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory
from tests.helpers import assert_problem, signed_in_scope, signed_in_user
from tests.testapp import views
from tests.testapp.models import Charge

URL = "/api/charges/"
KEY_ONLY_URL = "/api/key-only/"
NOWAIT_URL = "/api/nowait/"
REPLAYED = "Idempotent-Replayed"
#: Upper bound for any one thread; every scenario is expected to finish well inside it.
THREAD_TIMEOUT = 15.0


@dataclass
class Outcome:
    """One request's response, when it was sent and answered, and what the view's write saw."""

    response: object
    started: float
    finished: float
    #: ``len(connection.atomic_blocks)`` at each INSERT into the Charge table, in this thread.
    charge_insert_depths: list[int] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def content(self) -> bytes:
        return self.response.content

    @property
    def replayed(self) -> bool:
        return self.response.headers.get(REPLAYED) == "true"

    def __repr__(self) -> str:
        return f"<{self.status} replayed={self.replayed} {self.content[:120]!r}>"


def send(url: str, data: dict, key: str, *, user: User | None = None) -> Outcome:
    """POST ``data`` with ``key`` from a fresh client on this thread's own connection."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user if user is not None else signed_in_user())
    depths: list[int] = []

    def observe(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and "testapp_charge" in sql:
            depths.append(len(context["connection"].atomic_blocks))
        return execute(sql, params, many, context)

    started = time.monotonic()
    with connections[DEFAULT_DB_ALIAS].execute_wrapper(observe):
        response = client.post(url, data, format="json", HTTP_IDEMPOTENCY_KEY=key)
    return Outcome(response, started, time.monotonic(), depths)


def request(url: str, data: dict, key: str, *, user: User | None = None) -> Callable[[], Outcome]:
    return lambda: send(url, data, key, user=user)


class Background(threading.Thread):
    """Run ``call`` on its own thread (so its own connection), closing the connection afterwards."""

    def __init__(self, call: Callable[[], Outcome]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.outcome = self.call()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def result(self) -> Outcome:
        self.join(THREAD_TIMEOUT)
        assert not self.is_alive(), "a request thread did not finish in time"
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


def run_together(calls: list[Callable[[], Outcome]]) -> list[Outcome]:
    """Start one thread per call, release them all at once with a barrier, return the outcomes."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], Outcome]) -> Callable[[], Outcome]:
        def run() -> Outcome:
            barrier.wait(THREAD_TIMEOUT)
            return call()

        return run

    threads = [Background(released(call)) for call in calls]
    return [thread.result() for thread in threads]


def wait_for_execution(name: str, count: int = 1, timeout: float = 5.0) -> None:
    """Wait until the view ``name`` has started ``count`` times (its claim INSERT is done by then)."""
    deadline = time.monotonic() + timeout
    while views.executions[name] < count:
        assert time.monotonic() < deadline, f"{name} did not start: {views.executions}"
        time.sleep(0.005)


def assert_no_server_error(outcomes: list[Outcome]) -> None:
    errors = [outcome for outcome in outcomes if outcome.status >= 500]
    assert not errors, f"5xx among {sorted(o.status for o in outcomes)}: {errors}"


def assert_in_progress(outcome: Outcome) -> None:
    assert_problem(outcome.response, 409, "in-progress")
    assert int(outcome.response["Retry-After"]) >= 0


def assert_replay_of(outcome: Outcome, original: Outcome) -> None:
    assert outcome.replayed, outcome
    assert outcome.status == original.status
    assert outcome.content == original.content
    assert outcome.response["Content-Type"] == original.response["Content-Type"]
    assert outcome.response.get("Location") == original.response.get("Location")


def split(outcomes: list[Outcome]) -> tuple[list[Outcome], list[Outcome], list[Outcome]]:
    """Return (executed, replays, conflicts); fail on a 5xx or on any other kind of answer."""
    assert_no_server_error(outcomes)
    executed = [o for o in outcomes if 200 <= o.status < 300 and not o.replayed]
    replays = [o for o in outcomes if o.replayed]
    conflicts = [o for o in outcomes if o.status == 409 and not o.replayed]
    assert len(executed) + len(replays) + len(conflicts) == len(outcomes), outcomes
    for conflict in conflicts:
        assert_in_progress(conflict)
    return executed, replays, conflicts


def assert_exactly_once(outcomes: list[Outcome], view: str) -> Outcome:
    """Assert one execution answered, every other outcome replays it or is a 409; return it."""
    executed, replays, _conflicts = split(outcomes)
    assert views.executions[view] == 1, views.executions
    assert len(executed) == 1, outcomes
    (original,) = executed
    assert original.status == 201
    for replay in replays:
        assert_replay_of(replay, original)
    assert Charge.objects.count() == 1
    record = IdempotencyKey.objects.get()
    assert record.status == "completed"
    assert bytes(record.response_body) == original.content
    return original


def assert_overlapped(first: Outcome, duplicates: list[Outcome]) -> None:
    """Assert every duplicate was sent while ``first`` was still running."""
    late = [d for d in duplicates if d.started >= first.finished]
    assert not late, "some duplicates were sent after the first request had finished"


@contextmanager
def patched_database_settings(key: str, value: object, *, option: bool = False) -> Iterator[None]:
    """Set ``key`` (in ``OPTIONS`` with ``option``) for the default database, for every thread.

    Each thread's connection reads the ``settings_dict`` that ``django.db.connections`` shares;
    the test thread's own connection is patched too should it hold a copy.
    """
    shared = connections.settings[DEFAULT_DB_ALIAS]
    dicts = [shared] if shared is connection.settings_dict else [shared, connection.settings_dict]
    targets = [settings_dict["OPTIONS"] if option else settings_dict for settings_dict in dicts]
    missing = object()
    previous = [target.get(key, missing) for target in targets]
    for target in targets:
        target[key] = value
    try:
        yield
    finally:
        for target, old in zip(targets, previous, strict=True):
            if old is missing:
                del target[key]
            else:
                target[key] = old


def repeatable_read() -> object:
    """Return the REPEATABLE READ value of the ``isolation_level`` option for this backend."""
    if connection.vendor == "postgresql":
        from psycopg import IsolationLevel

        return IsolationLevel.REPEATABLE_READ
    return "repeatable read"


class ConcurrencyTestCase(TransactionTestCase):
    #: Whether every request runs in Django's ATOMIC_REQUESTS transaction.
    atomic_requests = False

    def setUp(self) -> None:
        views.executions.clear()
        # The threads' requests authenticate as the tester: create it before they start.
        signed_in_user()
        if self.atomic_requests:
            patch = patched_database_settings("ATOMIC_REQUESTS", True)
            patch.__enter__()
            self.addCleanup(patch.__exit__, None, None, None)

    def identical_burst(self, count: int = 20) -> tuple[Outcome, list[Outcome]]:
        outcomes = run_together([request(URL, {"amount": 5, "sleep": 0.3}, "burst")] * count)
        original = assert_exactly_once(outcomes, "api_charge")
        return original, outcomes

    def assert_lock_timeout(self, url: str, view: str, sleep: float = 2) -> None:
        """A duplicate of a request that holds the key longer than the lock wait gets 409."""
        first = Background(request(url, {"amount": 5, "sleep": sleep}, "slow"))
        wait_for_execution(view)
        duplicate = send(url, {"amount": 5, "sleep": sleep}, "slow")
        assert_in_progress(duplicate)
        assert not duplicate.charge_insert_depths
        original = first.result()
        assert original.status == 201
        # The 409 came from the bounded lock wait, not from waiting out the first request.
        assert duplicate.finished < original.finished
        retry = send(url, {"amount": 5, "sleep": sleep}, "slow")
        assert_replay_of(retry, original)
        assert views.executions[view] == 1
        assert Charge.objects.count() == 1


@pytest.mark.needs_row_locks
@pytest.mark.timeout(20)
class TestConcurrentDuplicates(ConcurrencyTestCase):
    def test_identical_requests_execute_once(self):
        original, outcomes = self.identical_burst()
        # The view's write ran inside the claim's transaction (and, with ATOMIC_REQUESTS, inside
        # the request's, which also proves the threads saw the setting).
        assert original.charge_insert_depths == [2 if self.atomic_requests else 1]
        # A duplicate only replays what committed; it never ran the view.
        assert all(not o.charge_insert_depths for o in outcomes if o is not original)
        retry = send(URL, {"amount": 5, "sleep": 0.3}, "burst")
        assert_replay_of(retry, original)
        assert views.executions["api_charge"] == 1

    def test_an_expired_record_is_taken_over_once(self):
        # Every duplicate sees the expired row; one takes it over under SELECT ... FOR UPDATE.
        IdempotencyKeyFactory(
            expired=True, scope=signed_in_scope("POST", "api/charges"), key="burst"
        )
        original, _outcomes = self.identical_burst()
        assert IdempotencyKey.objects.get().fingerprint != "0" * 64

    def test_distinct_keys_all_execute(self):
        outcomes = run_together(
            [request(URL, {"amount": 5, "sleep": 0.3}, f"key-{n}") for n in range(20)]
        )
        assert [o.status for o in outcomes] == [201] * 20
        assert not any(o.replayed for o in outcomes)
        assert len({o.content for o in outcomes}) == 20
        assert views.executions["api_charge"] == 20
        assert Charge.objects.count() == 20
        assert IdempotencyKey.objects.filter(status="completed").count() == 20

    def test_waiters_take_over_after_the_first_fails(self):
        # Key-only contract: the retries are the same operation without the injected failure.
        first = Background(request(KEY_ONLY_URL, {"amount": 5, "fail": "raise", "sleep": 1}, "k"))
        wait_for_execution("api_charge_key_only")
        duplicates = run_together([request(KEY_ONLY_URL, {"amount": 5}, "k")] * 10)
        failed = first.result()
        assert failed.status == 500
        assert not failed.replayed
        assert_overlapped(failed, duplicates)
        executed, replays, _conflicts = split(duplicates)
        assert len(executed) == 1, duplicates
        (winner,) = executed
        assert winner.status == 201
        for replay in replays:
            assert_replay_of(replay, winner)
        # The failed first run and exactly one waiter ran the view; only the waiter's write stayed.
        assert views.executions["api_charge_key_only"] == 2
        charge = Charge.objects.get()
        assert json.loads(winner.content)["id"] == charge.pk
        record = IdempotencyKey.objects.get()
        assert (record.status, bytes(record.response_body)) == ("completed", winner.content)

    def test_lock_timeout_answers_409_then_replays(self):
        with override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.2):
            self.assert_lock_timeout(URL, "api_charge")

    def test_nowait_view_answers_409_then_replays(self):
        self.assert_lock_timeout(NOWAIT_URL, "api_charge_nowait")

    def test_mismatch_in_flight_gets_422_after_the_first_commits(self):
        first = Background(request(URL, {"amount": 5, "sleep": 1}, "k"))
        wait_for_execution("api_charge")
        other = send(URL, {"amount": 6}, "k")
        original = first.result()
        assert original.status == 201
        assert_problem(other.response, 422, "key-mismatch")
        assert other.finished - other.started > 0.5, "422 before the first committed"
        assert not other.charge_insert_depths
        assert views.executions["api_charge"] == 1
        assert Charge.objects.get().amount == 5
        record = IdempotencyKey.objects.get()
        assert (record.status, bytes(record.response_body)) == ("completed", original.content)

    def test_two_users_same_key_execute_once_each(self):
        users = [User.objects.create_user(name) for name in ("alice", "bob")]
        calls = [request(URL, {"amount": 5, "sleep": 0.3}, "shared", user=u) for u in users] * 5
        outcomes = run_together(calls)
        assert views.executions["api_charge"] == 2
        for user in users:
            mine = [
                o for o, call_user in zip(outcomes, users * 5, strict=True) if call_user == user
            ]
            executed, replays, _conflicts = split(mine)
            assert len(executed) == 1, mine
            assert json.loads(executed[0].content)["owner"] == user.pk
            for replay in replays:
                assert_replay_of(replay, executed[0])
            assert Charge.objects.filter(owner=user).count() == 1
        assert IdempotencyKey.objects.filter(status="completed").count() == 2


class TestConcurrentDuplicatesUnderAtomicRequests(TestConcurrentDuplicates):
    """Every scenario again with ``ATOMIC_REQUESTS``: the claim becomes a savepoint."""

    atomic_requests = True

    def test_snapshot_isolation_executes_once(self):
        # Under REPEATABLE READ the request's snapshot predates the first commit, so a waiter
        # may answer 409 rather than replay; it must still never run the view or fail.
        with patched_database_settings("isolation_level", repeatable_read(), option=True):
            original, _outcomes = self.identical_burst()
        assert original.charge_insert_depths == [2]
        retry = send(URL, {"amount": 5, "sleep": 0.3}, "burst")
        assert_replay_of(retry, original)
        assert views.executions["api_charge"] == 1


@pytest.mark.timeout(20)
class TestSQLiteSerializesWriters(ConcurrencyTestCase):
    def setUp(self) -> None:
        if connection.vendor != "sqlite":
            self.skipTest("SQLite's database lock")
        super().setUp()

    def test_identical_requests_never_5xx(self):
        outcomes = run_together([request(URL, {"amount": 5, "sleep": 0.2}, "lite")] * 10)
        # The writer holding SQLite's lock always commits, so "at most one" is exactly one.
        assert_exactly_once(outcomes, "api_charge")

    def test_a_wait_beyond_the_busy_timeout_answers_409_then_replays(self):
        # settings.py gives SQLite a 2 s busy timeout; the first request holds the lock for 3 s.
        self.assert_lock_timeout(URL, "api_charge", sleep=3)
