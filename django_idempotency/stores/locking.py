"""Bound how long the claim waits for another transaction's lock, per database vendor."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

PG_LOCK_NOT_AVAILABLE = "55P03"
PG_DEADLOCK_DETECTED = "40P01"
PG_SERIALIZATION_FAILURE = "40001"
MYSQL_LOCK_WAIT_TIMEOUT = 1205
MYSQL_DEADLOCK = 1213


@contextmanager
def bounded_lock_wait(connection: BaseDatabaseWrapper, seconds: float | None) -> Iterator[None]:
    """Run the block with lock waits bounded to ``seconds`` (``None``: the database's own bound).

    PostgreSQL and MariaDB/MySQL get a transaction- or session-level timeout that is restored
    afterwards, so the view's own statements keep the project's setting. SQLite locks the whole
    database; its ``timeout`` connection option already bounds the wait.
    """
    if seconds is None or connection.vendor not in ("postgresql", "mysql"):
        yield
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # lock_timeout=0 disables the bound, so "do not wait" becomes 1 ms.
            milliseconds = max(1, math.ceil(seconds * 1000))
            cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [f"{milliseconds}ms"],
            )
            (previous,) = cursor.fetchone()[:1]
            # On failure the transaction (or savepoint) is rolled back, which restores the setting.
            yield
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
            return
        cursor.execute(
            "SET @django_idempotency_lock_wait = @@SESSION.innodb_lock_wait_timeout, "
            "SESSION innodb_lock_wait_timeout = %s",
            [math.ceil(seconds)],
        )
        restore = "SET SESSION innodb_lock_wait_timeout = @django_idempotency_lock_wait"
        try:
            yield
        except BaseException:
            with suppress(DatabaseError):
                cursor.execute(restore)
            raise
        cursor.execute(restore)


def is_lock_conflict(connection: BaseDatabaseWrapper, exc: Exception) -> bool:
    """Return whether ``exc`` means "another transaction holds the lock", not a broken database."""
    if connection.vendor == "postgresql":
        return getattr(exc.__cause__, "sqlstate", None) in (
            PG_LOCK_NOT_AVAILABLE,
            PG_DEADLOCK_DETECTED,
            PG_SERIALIZATION_FAILURE,
        )
    if connection.vendor == "mysql":
        return bool(exc.args) and exc.args[0] in (MYSQL_LOCK_WAIT_TIMEOUT, MYSQL_DEADLOCK)
    if connection.vendor == "sqlite":
        return "locked" in str(exc)
    return False


def is_deadlock(connection: BaseDatabaseWrapper, exc: Exception) -> bool:
    """Return whether ``exc`` is a deadlock, after which MariaDB has rolled back the whole transaction."""
    if connection.vendor == "postgresql":
        return getattr(exc.__cause__, "sqlstate", None) == PG_DEADLOCK_DETECTED
    if connection.vendor == "mysql":
        return bool(exc.args) and exc.args[0] == MYSQL_DEADLOCK
    return False
