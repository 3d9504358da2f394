"""No engine path leaves a session setting changed on a persistent connection (issue 10, item 2).

Each request runs on its own thread, hence its own connection, kept open as with
``CONN_MAX_AGE=None``. The thread reads its session's settings before the request and again
after the response, after ``close_old_connections()`` (what ``request_finished`` runs), on the
same connection: the same backend id proves it. Anything the claim bounded or stored (a lock
wait, a user variable) must be back to what it was before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections
from django.test import override_settings

from tests.helpers import assert_problem
from tests.test_concurrency import (
    KEY_ONLY_URL,
    NOWAIT_URL,
    URL,
    Background,
    Outcome,
    assert_in_progress,
    assert_replay_of,
    patched_database_settings,
    send,
    wait_for_execution,
)
from tests.testapp import views_session
from tests.testapp.models import Charge

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
    pytest.mark.urls("tests.testapp.urls_session"),
]

#: Session variables that legitimately change with every statement, so they are not compared.
MARIADB_VOLATILE = {
    "TIMESTAMP",
    "LAST_INSERT_ID",
    "INSERT_ID",
    "IDENTITY",
    "LAST_GTID",
    "GTID_SEQ_NO",
    "RAND_SEED1",
    "RAND_SEED2",
    "WARNING_COUNT",
    "ERROR_COUNT",
    "IN_TRANSACTION",
    "TRANSACTION_ALLOW_BATCHING",
}
#: The user variable today's engine keeps the previous lock wait in.
LIBRARY_USER_VARIABLE = "django_idempotency_lock_wait"
DEADLOCK_CODES = {"postgresql": "40P01", "mysql": 1213}


@dataclass
class Session:
    """One connection's identity and settings, read on the thread that owns it."""

    backend_id: int
    #: The settings the issue names, by name (MariaDB: also the library's user variable).
    named: dict[str, object]
    #: Every setting the server reports for this session, volatile counters left out.
    everything: dict[str, object]
    #: MariaDB's user variables of this session (``None`` where the server cannot list them).
    user_variables: dict[str, object] | None = None


def read_session() -> Session:
    """Read this thread's ``django.db.connection`` session, outside any transaction."""
    own = connections[DEFAULT_DB_ALIAS]
    assert not own.in_atomic_block, "the request left its connection inside a transaction"
    with own.cursor() as cursor:
        if own.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_backend_pid(), current_setting('lock_timeout'), "
                "current_setting('statement_timeout'), "
                "current_setting('idle_in_transaction_session_timeout')"
            )
            backend_id, lock, statement, idle = cursor.fetchone()
            named = {
                "lock_timeout": lock,
                "statement_timeout": statement,
                "idle_in_transaction_session_timeout": idle,
            }
            cursor.execute("SELECT name, setting FROM pg_settings")
            return Session(backend_id, named, dict(cursor.fetchall()))
        cursor.execute(
            "SELECT CONNECTION_ID(), @@SESSION.innodb_lock_wait_timeout, "
            f"@@SESSION.lock_wait_timeout, @{LIBRARY_USER_VARIABLE}"
        )
        backend_id, innodb_wait, wait, library_variable = cursor.fetchone()
        named = {
            "innodb_lock_wait_timeout": innodb_wait,
            "lock_wait_timeout": wait,
            f"@{LIBRARY_USER_VARIABLE}": library_variable,
        }
        cursor.execute(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES"
        )
        everything = {
            name: value for name, value in cursor.fetchall() if name.upper() not in MARIADB_VOLATILE
        }
        try:
            cursor.execute(
                "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.USER_VARIABLES"
            )
        except Exception:  # the user_variables plugin is not loaded on this server
            user_variables = None
        else:
            user_variables = dict(cursor.fetchall())
        return Session(backend_id, named, everything, user_variables)


@dataclass
class Served:
    """A request's outcome with its connection's session before and after it."""

    outcome: Outcome
    before: Session
    after: Session
    #: The database errors the request's statements raised, in order.
    errors: list[BaseException] = field(default_factory=list)


def served(url: str, data: dict, key: str, *, user: User | None) -> Callable[[], Served]:
    """Return a call that sends the request on this thread and reads its session around it."""

    def call() -> Served:
        before = read_session()
        errors: list[BaseException] = []

        def record_errors(execute, sql, params, many, context):
            try:
                return execute(sql, params, many, context)
            except Exception as exc:
                errors.append(exc)
                raise

        with connections[DEFAULT_DB_ALIAS].execute_wrapper(record_errors):
            outcome = send(url, data, key, user=user)
        # What request_finished runs: CONN_MAX_AGE=None keeps the connection open for the next.
        close_old_connections()
        return Served(outcome, before, read_session(), errors)

    return call


def assert_session_unchanged(result: Served) -> None:
    """Assert the request's own connection has exactly the session it started with."""
    assert result.after.backend_id == result.before.backend_id, "not the same connection"
    assert result.after.named == result.before.named, (
        f"session settings changed by {result.outcome}: "
        f"before {result.before.named}, after {result.after.named}"
    )
    if connection.vendor == "mysql":
        assert result.after.named[f"@{LIBRARY_USER_VARIABLE}"] is None
        if result.before.user_variables is not None:
            assert result.after.user_variables == result.before.user_variables == {}, (
                f"user variables left in the session: {result.after.user_variables}"
            )
    changed = {
        name: (value, result.after.everything.get(name))
        for name, value in result.before.everything.items()
        if result.after.everything.get(name) != value
    }
    assert not changed, f"session settings changed (before, after): {changed}"


def run(call: Callable[[], Served]) -> Served:
    return Background(call).result()


@pytest.fixture(autouse=True)
def persistent_connections(db) -> Iterator[None]:
    """Keep every thread's connection open across requests, as ``CONN_MAX_AGE=None`` does."""
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip(
            f"session lock settings exist on PostgreSQL and MariaDB; {connection.vendor} has none"
        )
    with patched_database_settings("CONN_MAX_AGE", None):
        yield


@pytest.fixture
def user() -> User:
    return User.objects.create_user("session-state")


def test_executed_request_leaves_the_session_as_it_was(user):
    result = run(served(URL, {"amount": 5}, "executed", user=user))
    assert result.outcome.status == 201, result.outcome
    assert not result.outcome.replayed
    assert_session_unchanged(result)


def test_replay_leaves_the_session_as_it_was(user):
    original = send(URL, {"amount": 5}, "replayed", user=user)
    assert original.status == 201
    result = run(served(URL, {"amount": 5}, "replayed", user=user))
    assert_replay_of(result.outcome, original)
    assert_session_unchanged(result)


def test_concurrent_duplicate_that_lost_the_claim_leaves_the_session_as_it_was(user):
    # The duplicate's INSERT waits on the first request's uncommitted row, then fails on the
    # unique index (MariaDB: IntegrityError, which marks the transaction for rollback).
    first = Background(served(URL, {"amount": 5, "sleep": 1}, "duplicate", user=user))
    wait_for_execution("api_charge")
    duplicate = run(served(URL, {"amount": 5, "sleep": 1}, "duplicate", user=user))
    original = first.result()
    assert original.outcome.status == 201
    assert_replay_of(duplicate.outcome, original.outcome)
    assert_session_unchanged(duplicate)
    assert_session_unchanged(original)


def test_mismatch_in_flight_leaves_the_session_as_it_was(user):
    first = Background(served(URL, {"amount": 5, "sleep": 1}, "mismatch", user=user))
    wait_for_execution("api_charge")
    other = run(served(URL, {"amount": 6}, "mismatch", user=user))
    assert first.result().outcome.status == 201
    assert_problem(other.outcome.response, 422, "key-mismatch")
    assert_session_unchanged(other)


def test_mismatch_of_a_completed_key_leaves_the_session_as_it_was(user):
    assert send(URL, {"amount": 5}, "mismatch-later", user=user).status == 201
    other = run(served(URL, {"amount": 6}, "mismatch-later", user=user))
    assert_problem(other.outcome.response, 422, "key-mismatch")
    assert_session_unchanged(other)


@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.2)
def test_lock_timeout_leaves_the_session_as_it_was(user):
    first = Background(served(URL, {"amount": 5, "sleep": 2}, "timeout", user=user))
    wait_for_execution("api_charge")
    duplicate = run(served(URL, {"amount": 5, "sleep": 2}, "timeout", user=user))
    assert_in_progress(duplicate.outcome)
    assert first.result().outcome.status == 201
    assert_session_unchanged(duplicate)


def test_no_wait_lock_timeout_leaves_the_session_as_it_was(user):
    # lock_timeout=0: the bound the claim sets is "do not wait" (MariaDB: 0 s, PostgreSQL: 1 ms).
    first = Background(served(NOWAIT_URL, {"amount": 5, "sleep": 2}, "nowait", user=user))
    wait_for_execution("api_charge_nowait")
    duplicate = run(served(NOWAIT_URL, {"amount": 5, "sleep": 2}, "nowait", user=user))
    assert_in_progress(duplicate.outcome)
    assert first.result().outcome.status == 201
    assert_session_unchanged(duplicate)


def test_view_exception_leaves_the_session_as_it_was(user):
    result = run(served(KEY_ONLY_URL, {"amount": 5, "fail": "raise"}, "raises", user=user))
    assert result.outcome.status == 500
    assert_session_unchanged(result)


def wait_for_lock_waiter(waiter: Background, timeout: float = 5.0) -> None:
    """Wait until ``waiter``'s request (some other session of this database) waits for a lock."""
    if connection.vendor == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
    else:
        sql = "SELECT count(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'"
    # InnoDB refreshes INNODB_TRX only when it was not read for 0.1 s: poll more slowly.
    interval = 0.01 if connection.vendor == "postgresql" else 0.2
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            if cursor.fetchone()[0]:
                return
        if not waiter.is_alive():
            pytest.fail(f"the second claim did not wait for the first: {waiter.result()}")
        assert time.monotonic() < deadline, "the second claim never waited for the first"
        time.sleep(interval)


def is_deadlock(exc: BaseException) -> bool:
    code = DEADLOCK_CODES[connection.vendor]
    if connection.vendor == "postgresql":
        return getattr(exc.__cause__, "sqlstate", None) == code
    return bool(getattr(exc, "args", ())) and exc.args[0] == code


@pytest.fixture
def proceed() -> Iterator[threading.Event]:
    views_session.proceed.clear()
    try:
        yield views_session.proceed
    finally:
        # Never leave a holder waiting, whatever the test did.
        views_session.proceed.set()


def test_deadlock_on_the_claim_leaves_both_sessions_as_they_were(user, proceed):
    # Holder: claims the key, then (on ``proceed``) locks the row. Rival: locks the row in an
    # outer transaction, then claims the same key and waits for the holder. The holder's row
    # lock closes the cycle; the database aborts one of them with a deadlock.
    row = Charge.objects.create(amount=1, note="contended")
    path = f"?lock={row.pk}"
    holder = Background(served(f"/session/claim-then-lock/{path}", {}, "deadlock", user=None))
    wait_for_execution("session_claim_then_lock")
    rival = Background(served(f"/session/lock-then-claim/{path}", {}, "deadlock", user=None))
    wait_for_lock_waiter(rival)
    proceed.set()
    # The rival, whose wait started first, is the victim (PostgreSQL checks the longest waiter
    # first; InnoDB rolls back the lighter transaction): its session is checked first.
    results: list[Served] = [rival.result(), holder.result()]
    deadlocks = [exc for result in results for exc in result.errors if is_deadlock(exc)]
    assert deadlocks, f"no deadlock was provoked: {[r.outcome for r in results]}"
    for result in results:
        assert result.outcome.status in (201, 409, 500), result.outcome
        assert_session_unchanged(result)
