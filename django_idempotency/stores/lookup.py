"""The key lookup, compiled by the ORM once per database instead of on every request.

Every idempotent request with a key starts with this one indexed ``SELECT``, and a replay is
nothing else. Building it with the ORM per request costs about four times the round trip itself
(query building, compilation, model handling), so the ORM compiles it once per database alias;
each request then runs the same SQL with its own scope and key and applies the same converters
the ORM would (dates, JSON, bytes, per vendor).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.dispatch import receiver

from django_idempotency.models import IdempotencyKey

#: Stand-ins for the two parameters while the ORM compiles the query; found again in its params.
_SCOPE = "\x00django-idempotency-scope"
_KEY = "\x00django-idempotency-key"

Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


@dataclass(frozen=True)
class CompiledLookup:
    """The lookup's SQL for one database, where its parameters go, and how to read its row."""

    sql: str
    template: tuple[Any, ...]
    scope_at: int
    key_at: int
    names: tuple[str, ...]
    converters: tuple[tuple[int, tuple[Converter, ...], Any], ...]

    def params(self, scope: str, key: str) -> list[Any]:
        """Return the query parameters for ``(scope, key)``."""
        params = list(self.template)
        params[self.scope_at] = scope
        params[self.key_at] = key
        return params

    def find(self, using: str, scope: str, key: str) -> dict[str, Any] | None:
        """Return the row for ``(scope, key)`` on ``using`` as field values by name, or ``None``.

        No model instance is built: a replay needs the values only.
        """
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.params(scope, key))
            row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip(self.names, self.convert(row, connection), strict=True))

    def convert(self, row: Sequence[Any], connection: BaseDatabaseWrapper) -> list[Any]:
        """Return ``row`` with the ORM's converters applied, as ``QuerySet`` iteration does."""
        values = list(row)
        for position, converters, expression in self.converters:
            value = values[position]
            for converter in converters:
                value = converter(value, expression, connection)
            values[position] = value
        return values


_compiled: dict[str, CompiledLookup] = {}
_compiled_lock = threading.Lock()


def compiled_lookup(using: str) -> CompiledLookup:
    """Return the lookup compiled for the database ``using``, compiling it on first use."""
    compiled = _compiled.get(using)
    if compiled is None:
        compiled = _compile(using)
        with _compiled_lock:
            _compiled[using] = compiled
    return compiled


def _compile(using: str) -> CompiledLookup:
    query = IdempotencyKey.objects.using(using).filter(scope=_SCOPE, key=_KEY).order_by().query
    compiler = query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    columns = [column for column, _sql, _alias in compiler.select]
    converters = compiler.get_converters(columns)
    return CompiledLookup(
        sql=sql,
        template=tuple(params),
        scope_at=list(params).index(_SCOPE),
        key_at=list(params).index(_KEY),
        names=tuple(column.target.attname for column in columns),
        converters=tuple(
            (position, tuple(functions), expression)
            for position, (functions, expression) in converters.items()
        ),
    )


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        _compiled.clear()
