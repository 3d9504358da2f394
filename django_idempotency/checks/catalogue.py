"""The catalogue of system checks: every ID with its message and hint, and how one is built."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning

from django_idempotency.conf import KEY_COLUMN_LENGTH

#: Every check: ID -> (message, hint). IDs are never reused; ``str.format`` fills the fields.
CATALOGUE: dict[str, tuple[str, str]] = {
    "E001": (
        "{setting} is {value!r}; it must be a positive duration.",
        "Set {setting} to a timedelta or a number of seconds greater than 0.",
    ),
    "E002": (
        "IDEMPOTENCY_STORE_STATUSES is {value!r}; it must be a collection of HTTP status codes.",
        "Set IDEMPOTENCY_STORE_STATUSES to integers from 100 to 599, e.g. range(200, 400).",
    ),
    "E003": (
        "{setting} is {value!r}; it must be a 4xx status code.",
        "Set {setting} to an integer from 400 to 499 (default {default}).",
    ),
    "E004": (
        "{setting} is {value!r}; it is not an HTTP header name a WSGI or ASGI server passes on.",
        "Set {setting} to letters, digits and hyphens only, e.g. {default!r}. Servers drop "
        "headers with underscores.",
    ),
    "E005": (
        "IDEMPOTENCY_KEY_MIN_LENGTH ({min!r}) and IDEMPOTENCY_KEY_MAX_LENGTH ({max!r}) are not "
        "valid bounds.",
        "Use integers with 1 <= IDEMPOTENCY_KEY_MIN_LENGTH <= IDEMPOTENCY_KEY_MAX_LENGTH <= "
        f"{KEY_COLUMN_LENGTH} (the key column's size).",
    ),
    "E006": (
        "{setting} is {value!r}; it must be a list, tuple or set of strings.",
        "Set {setting} to a list of strings, e.g. {default!r}; a bare string is iterated "
        "character by character.",
    ),
    "E007": (
        "{setting} is {value!r}; it must be one of {choices}.",
        "Set {setting} to one of {choices}.",
    ),
    "E008": (
        "IDEMPOTENCY_MODE is 'atomic' while IDEMPOTENCY_STORE is 'cache'.",
        "Atomic mode runs the view inside the database transaction that holds the claim; set "
        "IDEMPOTENCY_MODE = 'lease' to use the cache store, or IDEMPOTENCY_STORE = 'database'.",
    ),
    "E009": (
        "{setting} is {value!r}; it must be {expected}.",
        "Set {setting} to {expected}.",
    ),
    "E010": (
        "Could not import {value!r} for setting {setting}: {error}",
        "Fix the dotted path in {setting}, or set it to the callable itself.",
    ),
    "E011": (
        "{setting} is {value!r}, which is not callable.",
        "Set {setting} to a callable or to the dotted path of one.",
    ),
    "E012": (
        "IDEMPOTENCY_CACHE_ALIAS is {value!r}, which is not in CACHES.",
        "Add a {value!r} entry to CACHES (django_redis.cache.RedisCache), or point "
        "IDEMPOTENCY_CACHE_ALIAS at an existing alias.",
    ),
    "E013": (
        "The cache {alias!r} used by the cache store is a DummyCache, which stores nothing.",
        "Point IDEMPOTENCY_CACHE_ALIAS at a django_redis.cache.RedisCache; with DummyCache every "
        "retry runs the view again.",
    ),
    "E014": (
        "The cache {alias!r} used by the cache store ({backend}) is not shared between processes.",
        "Each worker would keep its own keys, so a retry reaching another worker would run the "
        "view again. Point IDEMPOTENCY_CACHE_ALIAS at a django_redis.cache.RedisCache.",
    ),
    "E015": (
        "The cache {alias!r} used by the cache store ({backend}) is not a Redis cache.",
        "The cache store claims keys with SET NX and Lua scripts on Redis: point "
        "IDEMPOTENCY_CACHE_ALIAS at a 'django.core.cache.backends.redis.RedisCache' or a "
        "'django_redis.cache.RedisCache'.",
    ),
    "E016": (
        "The key records on database {alias!r} compare {columns} inexactly: keys or scopes that "
        "differ in case, accents or trailing spaces would share one record and one stored "
        "response.",
        "Run 'manage.py migrate django_idempotency' (migration 0003 gives scope and key a "
        "binary, no-pad collation); never change the collation of those columns afterwards.",
    ),
    "W001": (
        "IDEMPOTENCY_METHODS includes the safe method(s) {methods}.",
        "Remove them from IDEMPOTENCY_METHODS: safe methods need no Idempotency-Key. "
        "IdempotentMixin never protects them, and @idempotent would store and replay reads.",
    ),
    "W002": (
        "Idempotency keys are written to the SQLite database {alias!r} while DEBUG is False.",
        "SQLite serializes writers and has no row locks: concurrent duplicates get 409 instead of "
        "waiting. Use PostgreSQL or MariaDB/MySQL in production.",
    ),
    "W003": (
        "Redis behind the cache {alias!r} has maxmemory-policy {policy!r}, which may evict "
        "idempotency records.",
        "An evicted record lets a retry run the view again. The records carry TTLs, so volatile-* "
        "policies evict them too: run this Redis with maxmemory-policy noeviction (in redis.conf, "
        "or CONFIG SET maxmemory-policy noeviction).",
    ),
    "W004": (
        "Could not read the maxmemory-policy of Redis behind the cache {alias!r}: {error}",
        "Check that Redis is reachable from this host and that INFO is allowed, then run "
        "'manage.py check --database default' again.",
    ),
    "W005": (
        "ATOMIC_REQUESTS is True on database {alias!r} while IDEMPOTENCY_MODE is 'lease' with "
        "the database store.",
        "A lease claim cannot commit before the view inside the request's transaction, so lease "
        "views then claim inside it and behave as in atomic mode. Mark lease views "
        "@transaction.non_atomic_requests, set IDEMPOTENCY_STORE = 'cache', or turn "
        "ATOMIC_REQUESTS off.",
    ),
    "W006": (
        "IDEMPOTENCY_TTL ({ttl}) is shorter than IDEMPOTENCY_LEASE ({lease}).",
        "A record must outlive its lease: make IDEMPOTENCY_TTL longer than IDEMPOTENCY_LEASE.",
    ),
    "W007": (
        "IDEMPOTENCY_ENABLED is False while DEBUG is False: no view is protected.",
        "Retries of unsafe requests will run their views again. Remove IDEMPOTENCY_ENABLED, or "
        "add 'django_idempotency.W007' to SILENCED_SYSTEM_CHECKS if this is intended.",
    ),
    "W008": (
        "{setting} is not a setting of django-idempotency.",
        "{suggestion}See {docs}settings/ for every setting.",
    ),
}


def message(code: str, obj: Any = None, **fields: Any) -> CheckMessage:
    """Return the check message ``code`` from the catalogue, its fields filled in."""
    text, hint = CATALOGUE[code]
    kind = Error if code.startswith("E") else Warning
    return kind(
        text.format(**fields), hint=hint.format(**fields), obj=obj, id=f"django_idempotency.{code}"
    )
