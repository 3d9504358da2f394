"""The claim statements, written per database vendor from the model's metadata.

A claim that meets an existing key must not raise a database error: PostgreSQL would write the
conflicting key to its server log (``DETAIL: Key (scope, key)=(...)``), and Django would mark the
transaction for rollback. So a new key is claimed with an insert that does nothing on conflict
(``ON CONFLICT DO NOTHING``, ``ON DUPLICATE KEY UPDATE id = id``), and an expired record is taken
over by one conditional ``UPDATE``. A lock bound rides on the statement itself where the database
allows it (``SET STATEMENT ... FOR`` on MariaDB), so nothing outlives it on a pooled connection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from django_idempotency.models import IdempotencyKey
from django_idempotency.stores.base import COMPLETED, IN_PROGRESS

#: Every column a claim writes: all concrete fields but the primary key (Django keeps defaults
#: in Python, so a hand-written INSERT must name them all).
CLAIM_FIELDS = tuple(
    field for field in IdempotencyKey._meta.concrete_fields if not field.primary_key
)


def claim_values(**values: object) -> dict[str, object]:
    """Return a value for every claim column: ``values``, and the model's default for the rest."""
    unknown = set(values) - {field.attname for field in CLAIM_FIELDS}
    if unknown:
        raise TypeError(f"not key record columns: {sorted(unknown)}")
    return {
        field.attname: values[field.attname] if field.attname in values else field.get_default()
        for field in CLAIM_FIELDS
    }


def insert_claim(
    using: str, values: Mapping[str, object], *, lock_timeout: float | None
) -> object | None:
    """Insert a key record; return its primary key, or ``None`` when its (scope, key) exists.

    A concurrent duplicate's insert waits for the first transaction, bounded by ``lock_timeout``
    seconds, then finds the key taken. A lock timeout or deadlock still raises, as Django's
    ``OperationalError``.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(IdempotencyKey._meta.db_table)
    columns = ", ".join(quote(_column(field.attname)) for field in CLAIM_FIELDS)
    placeholders = ", ".join(["%s"] * len(CLAIM_FIELDS))
    params = [field.get_db_prep_save(values[field.attname], connection) for field in CLAIM_FIELDS]
    pk = quote(_column("id"))
    identity = f"{quote(_column('scope'))}, {quote(_column('key'))}"
    insert = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"
    if connection.vendor == "postgresql":
        with _server_bound_cursor(connection) as cursor:
            cursor.execute(f"{insert} ON CONFLICT ({identity}) DO NOTHING RETURNING {pk}", params)
            row = cursor.fetchone()
        found: object = None if row is None else row[0]
        return found
    if connection.vendor == "mysql":
        statement = f"{insert} ON DUPLICATE KEY UPDATE {pk} = {pk}"
        with (
            connection.cursor() as cursor,
            _mysql_lock_bound(connection, cursor, lock_timeout) as bound,
        ):
            cursor.execute(bound + statement, params)
            # Django connects with CLIENT.FOUND_ROWS, so the row count is 1 either way; an
            # insert is told apart by the id it generated (0 when the existing row was kept).
            inserted: object = cursor.lastrowid
            return inserted or None
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"{insert} ON CONFLICT ({identity}) DO NOTHING", params)
            return cursor.lastrowid if cursor.rowcount == 1 else None
    from django.db import IntegrityError

    try:
        with transaction.atomic(using=using):
            created: object = IdempotencyKey.objects.using(using).create(**values).pk
            return created
    except IntegrityError:
        return None


def take_over(
    using: str,
    pk: object,
    values: Mapping[str, object],
    *,
    now: datetime,
    lock_timeout: float | None,
) -> bool:
    """Overwrite the record ``pk`` with a new claim if it is still free at ``now``; return whether it was.

    The ``UPDATE`` waits for a transaction that holds the row, then checks the condition again on
    the row as that transaction left it, so of two requests racing for one record one wins.
    """
    connection = connections[using]
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(_column(name))

    changed = [field for field in CLAIM_FIELDS if field.attname not in ("scope", "key")]
    assignments = ", ".join(f"{quote(_column(field.attname))} = %s" for field in changed)
    params: list[Any] = [
        field.get_db_prep_save(values[field.attname], connection) for field in changed
    ]
    moment = IdempotencyKey._meta.get_field("expires_at").get_db_prep_value(now, connection)  # type: ignore[union-attr]
    free = (
        f"({column('status')} = %s AND {column('expires_at')} <= %s) OR ({column('status')} = %s "
        f"AND ({column('lease_expires_at')} <= %s OR ({column('lease_expires_at')} IS NULL "
        f"AND {column('expires_at')} <= %s)))"
    )
    params += [pk, COMPLETED, moment, IN_PROGRESS, moment, moment]
    statement = (
        f"UPDATE {quote(IdempotencyKey._meta.db_table)} SET {assignments} "
        f"WHERE {column('id')} = %s AND ({free})"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            with _mysql_lock_bound(connection, cursor, lock_timeout) as bound:
                cursor.execute(bound + statement, params)
        else:
            cursor.execute(statement, params)
        return bool(cursor.rowcount)


def _column(name: str) -> str:
    """Return the database column of the model field ``name``."""
    field: Any = IdempotencyKey._meta.get_field(name)
    return str(field.column)


@contextmanager
def _server_bound_cursor(connection: BaseDatabaseWrapper) -> Iterator[CursorWrapper]:
    """Yield a Django cursor whose parameters travel apart from the SQL (psycopg 3).

    A statement that fails is then logged by PostgreSQL as ``$1, $2``, without the key, and
    PostgreSQL logs no parameters on error by default. psycopg 2 has no such cursor.
    """
    psycopg: Any
    try:
        import psycopg
    except ImportError:  # psycopg 2: Django's own cursor, which binds on the client
        psycopg = None
    raw = connection.connection
    if psycopg is None or not isinstance(raw, psycopg.Connection):
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.validate_thread_sharing()
    server_bound: Any = psycopg.Cursor(raw)
    cursor = (
        connection.make_debug_cursor(server_bound)
        if connection.queries_logged
        else connection.make_cursor(server_bound)
    )
    with cursor:
        yield cursor


@contextmanager
def _mysql_lock_bound(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, seconds: float | None
) -> Iterator[str]:
    """Yield the prefix that bounds the next statement's lock wait to ``seconds`` on MariaDB/MySQL.

    MariaDB scopes the bound to the statement (``SET STATEMENT ... FOR``). MySQL has no such form
    for ``innodb_lock_wait_timeout``, so its session value is set and then restored through the
    driver's own cursor, which works even after Django has marked the transaction for rollback.
    """
    if seconds is None:
        yield ""
        return
    bound = math.ceil(seconds)
    if connection.mysql_is_mariadb:  # type: ignore[attr-defined]
        yield f"SET STATEMENT innodb_lock_wait_timeout={bound:d} FOR "
        return
    cursor.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
    (previous,) = cursor.fetchone()
    cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", [bound])
    try:
        yield ""
    finally:
        raw = connection.connection.cursor()
        try:
            raw.execute("SET SESSION innodb_lock_wait_timeout = %s", [int(previous)])
        finally:
            raw.close()
