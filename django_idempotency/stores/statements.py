"""The store's write statements, written once per database from the model's metadata.

A claim that meets an existing key must not raise a database error: PostgreSQL would write the
conflicting key to its server log (``DETAIL: Key (scope, key)=(...)``), and Django would mark the
transaction for rollback. So a new key is claimed with an insert that does nothing on conflict
(``ON CONFLICT DO NOTHING``, ``ON DUPLICATE KEY UPDATE id = id``), and an expired record is taken
over by one conditional ``UPDATE``. A lock bound rides on the claim statement itself, so nothing
outlives it on a pooled connection and it costs no round trip of its own: MariaDB scopes it to
the statement (``SET STATEMENT ... FOR``); on PostgreSQL the statement sets it for its
transaction before it inserts and puts the previous value back in its ``RETURNING``.

Each statement is built by the ORM's own quoting and value preparation from ``IdempotencyKey``'s
fields, once per database alias, and run on a plain cursor: no query building per request.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.signals import setting_changed
from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.dispatch import receiver

from django_idempotency.models import IdempotencyKey
from django_idempotency.stores.base import COMPLETED, IN_PROGRESS

#: Every column a claim writes: all concrete fields but the primary key (Django keeps defaults
#: in Python, so a hand-written INSERT must name them all).
CLAIM_FIELDS = tuple(
    field for field in IdempotencyKey._meta.concrete_fields if not field.primary_key
)
#: The columns that completing a claim writes, in the order of ``completion_values``.
COMPLETION_FIELDS = (
    "status",
    "response_status",
    "response_headers",
    "response_body",
    "completed_at",
    "expires_at",
    "lease_expires_at",
)
#: The columns a take-over leaves alone: they are the record's identity.
IDENTITY_FIELDS = ("scope", "key")


@dataclass(frozen=True)
class Statements:
    """The write statements for one database, with ``%s`` placeholders."""

    vendor: str
    #: Claims a new key; PostgreSQL's takes the lock bound as its first parameter.
    insert: str
    insert_bounded: str
    #: Takes a free record over: the new values, then the record's id and the moment "now".
    take_over: str
    #: Stores a response: the completion values, then the record's id.
    complete: str
    #: Stores a response if a lease still owns the record: completion values, id, token.
    complete_owned: str


def column(name: str) -> str:
    """Return the database column of the model field ``name``."""
    field: Any = IdempotencyKey._meta.get_field(name)
    return str(field.column)


def claim_values(**values: object) -> dict[str, object]:
    """Return a value for every claim column: ``values``, and the model's default for the rest."""
    unknown = set(values) - {field.attname for field in CLAIM_FIELDS}
    if unknown:
        raise TypeError(f"not key record columns: {sorted(unknown)}")
    return {
        field.attname: values[field.attname] if field.attname in values else field.get_default()
        for field in CLAIM_FIELDS
    }


def statements(using: str) -> Statements:
    """Return the statements for the database ``using``, writing them on first use."""
    found = _written.get(using)
    if found is None:
        found = _write(connections[using])
        with _written_lock:
            _written[using] = found
    return found


def insert_claim(
    using: str, values: Mapping[str, object], *, lock_timeout: float | None
) -> object | None:
    """Insert a key record; return its primary key, or ``None`` when its (scope, key) exists.

    A concurrent duplicate's insert waits for the first transaction, bounded by ``lock_timeout``
    seconds (``None``: the database's own bound), then finds the key taken. A lock timeout or
    deadlock still raises, as Django's ``OperationalError``.
    """
    connection = connections[using]
    sql = statements(using)
    params = _prepared(connection, CLAIM_FIELDS, values)
    if sql.vendor == "postgresql":
        if lock_timeout is not None:
            # lock_timeout=0 disables the bound, so "do not wait" becomes 1 ms.
            params.insert(0, f"{max(1, math.ceil(lock_timeout * 1000))}ms")
        with _server_bound_cursor(connection) as cursor:
            cursor.execute(sql.insert if lock_timeout is None else sql.insert_bounded, params)
            row = cursor.fetchone()
        found: object = None if row is None else row[0]
        return found
    if sql.vendor == "mysql":
        with (
            connection.cursor() as cursor,
            _mysql_lock_bound(connection, cursor, lock_timeout) as bound,
        ):
            cursor.execute(bound + sql.insert, params)
            # Django connects with CLIENT.FOUND_ROWS, so the row count is 1 either way; an
            # insert is told apart by the id it generated (0 when the existing row was kept).
            inserted: object = cursor.lastrowid
            return inserted or None
    if sql.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(sql.insert, params)
            return cursor.lastrowid if cursor.rowcount == 1 else None
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
    PostgreSQL's lock bound is set around it by the caller (``locking.bounded_lock_wait``).
    """
    connection = connections[using]
    sql = statements(using)
    changed = tuple(field for field in CLAIM_FIELDS if field.attname not in IDENTITY_FIELDS)
    moment = IdempotencyKey._meta.get_field("expires_at").get_db_prep_value(now, connection)  # type: ignore[union-attr]
    params = [*_prepared(connection, changed, values), pk, moment, moment, moment]
    with connection.cursor() as cursor:
        if sql.vendor == "mysql":
            with _mysql_lock_bound(connection, cursor, lock_timeout) as bound:
                cursor.execute(bound + sql.take_over, params)
        else:
            cursor.execute(sql.take_over, params)
        return bool(cursor.rowcount)


def complete(
    using: str, pk: object, values: Mapping[str, object], *, token: int | None = None
) -> bool:
    """Write the completion ``values`` on record ``pk``; return whether the record was there.

    With ``token``, only while that lease still owns the in-progress record.
    """
    connection = connections[using]
    sql = statements(using)
    fields = tuple(IdempotencyKey._meta.get_field(name) for name in COMPLETION_FIELDS)
    params: list[Any] = [*_prepared(connection, fields, values), pk]
    statement = sql.complete
    if token is not None:
        params += [token, IN_PROGRESS]
        statement = sql.complete_owned
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return bool(cursor.rowcount)


def _prepared(
    connection: BaseDatabaseWrapper, fields: tuple[Any, ...], values: Mapping[str, object]
) -> list[Any]:
    return [field.get_db_prep_save(values[field.attname], connection) for field in fields]


def _write(connection: BaseDatabaseWrapper) -> Statements:
    quote = connection.ops.quote_name

    def is_(name: str) -> str:
        return quote(column(name))

    table = quote(IdempotencyKey._meta.db_table)
    pk = is_("id")
    columns = ", ".join(is_(field.attname) for field in CLAIM_FIELDS)
    placeholders = ", ".join(["%s"] * len(CLAIM_FIELDS))
    identity = ", ".join(is_(name) for name in IDENTITY_FIELDS)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"
    insert_bounded = ""
    if connection.vendor == "postgresql":
        returning = f" ON CONFLICT ({identity}) DO NOTHING RETURNING {pk}"
        # The bound is set by the CTE before the row is inserted, so it bounds the wait on a
        # concurrent duplicate; RETURNING puts the previous value back once the row is in.
        # Without a row (the key was taken) the bound lasts only to the end of a transaction
        # in which the view will not run.
        first_value = "(SELECT %s FROM bound)"
        insert_bounded = (
            "WITH bound AS MATERIALIZED (SELECT current_setting('lock_timeout') AS previous, "
            "set_config('lock_timeout', %s, true) AS bounded) "
            f"INSERT INTO {table} ({columns}) VALUES "
            f"({', '.join([first_value] + ['%s'] * (len(CLAIM_FIELDS) - 1))})"
            f"{returning}, set_config('lock_timeout', (SELECT previous FROM bound), true)"
        )
        insert += returning
    elif connection.vendor == "mysql":
        insert += f" ON DUPLICATE KEY UPDATE {pk} = {pk}"
    elif connection.vendor == "sqlite":
        insert += f" ON CONFLICT ({identity}) DO NOTHING"

    changed = [field for field in CLAIM_FIELDS if field.attname not in IDENTITY_FIELDS]
    assignments = ", ".join(f"{is_(field.attname)} = %s" for field in changed)
    free = (
        f"({is_('status')} = '{COMPLETED}' AND {is_('expires_at')} <= %s) OR "
        f"({is_('status')} = '{IN_PROGRESS}' AND ({is_('lease_expires_at')} <= %s OR "
        f"({is_('lease_expires_at')} IS NULL AND {is_('expires_at')} <= %s)))"
    )
    completion = ", ".join(f"{is_(name)} = %s" for name in COMPLETION_FIELDS)
    complete_sql = f"UPDATE {table} SET {completion} WHERE {pk} = %s"
    return Statements(
        vendor=connection.vendor,
        insert=insert,
        insert_bounded=insert_bounded,
        take_over=f"UPDATE {table} SET {assignments} WHERE {pk} = %s AND ({free})",
        complete=complete_sql,
        complete_owned=(f"{complete_sql} AND {is_('fencing_token')} = %s AND {is_('status')} = %s"),
    )


_written: dict[str, Statements] = {}
_written_lock = threading.Lock()


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        _written.clear()


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
    connection.ensure_connection()
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
