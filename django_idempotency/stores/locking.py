"""Bound how long the claim waits for another transaction's lock, per database vendor."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.backends.base.base import BaseDatabaseWrapper

PG_LOCK_NOT_AVAILABLE = "55P03"
PG_DEADLOCK_DETECTED = "40P01"
PG_SERIALIZATION_FAILURE = "40001"
PG_IN_FAILED_TRANSACTION = "25P02"
#: psycopg 2's ISOLATION_LEVEL_SERIALIZABLE (psycopg 3 numbers it 4, in an enum).
PSYCOPG2_SERIALIZABLE = 3
MYSQL_LOCK_WAIT_TIMEOUT = 1205
MYSQL_DEADLOCK = 1213


@contextmanager
def bounded_lock_wait(connection: BaseDatabaseWrapper, seconds: float | None) -> Iterator[None]:
    """Run the block with PostgreSQL's lock waits bounded to ``seconds`` (``None``: its own bound).

    The bound is set for the transaction only (``set_config(..., true)``) and put back after the
    block, so the view's own statements keep the project's setting; should the block fail, the
    rollback of its transaction or savepoint restores it. MariaDB and MySQL bound the claim
    statement itself (``stores.statements``); SQLite's ``timeout`` option bounds its wait.
    """
    if seconds is None or connection.vendor != "postgresql":
        yield
        return
    # lock_timeout=0 disables the bound, so "do not wait" becomes 1 ms.
    milliseconds = max(1, math.ceil(seconds * 1000))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            [f"{milliseconds}ms"],
        )
        (previous,) = cursor.fetchone()[:1]
        yield
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


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


def is_database_lock(connection: BaseDatabaseWrapper, exc: Exception) -> bool:
    """Return whether ``exc`` is SQLite's lock on the whole database, which any key can meet."""
    return connection.vendor == "sqlite" and "locked" in str(exc)


def is_deadlock(connection: BaseDatabaseWrapper, exc: Exception) -> bool:
    """Return whether ``exc`` is a deadlock, after which MariaDB has rolled back the whole transaction."""
    if connection.vendor == "postgresql":
        return getattr(exc.__cause__, "sqlstate", None) == PG_DEADLOCK_DETECTED
    if connection.vendor == "mysql":
        return bool(exc.args) and exc.args[0] == MYSQL_DEADLOCK
    return False


def is_aborted_transaction(connection: BaseDatabaseWrapper, exc: Exception) -> bool:
    """Return whether ``exc`` says the transaction was aborted by an earlier failed statement.

    PostgreSQL refuses every statement after one that failed, until the transaction or its
    savepoint is rolled back; a view that caught the first error leaves it so.
    """
    return (
        connection.vendor == "postgresql"
        and getattr(exc.__cause__, "sqlstate", None) == PG_IN_FAILED_TRANSACTION
    )


def is_serializable(connection: BaseDatabaseWrapper) -> bool:
    """Return whether ``connection`` runs PostgreSQL transactions at SERIALIZABLE isolation."""
    if connection.vendor != "postgresql":
        return False
    # Set when Django connects: psycopg 3's IsolationLevel enum, or psycopg 2's integer.
    level = getattr(connection, "isolation_level", None)
    name = getattr(level, "name", None)
    if name is not None:
        return bool(name == "SERIALIZABLE")
    return level == PSYCOPG2_SERIALIZABLE
