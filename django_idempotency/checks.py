"""System checks: settings the app cannot work with, and infrastructure that weakens its guarantee."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.db import connections, router
from django.utils.module_loading import import_string

from django_idempotency import conf as conf_module
from django_idempotency.conf import KEY_COLUMN_LENGTH, Settings

PREFIX = "IDEMPOTENCY_"
DOCS = "https://django-idempotency.readthedocs.io/en/latest/"

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
        "The cache {alias!r} used by the cache store ({backend}) is not a django-redis cache.",
        "The cache store claims keys with SET NX and Lua scripts through django-redis: install "
        "django-redis (django-idempotency[redis]) and point IDEMPOTENCY_CACHE_ALIAS at a "
        "django_redis.cache.RedisCache.",
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
        "A lease claim cannot commit before the view inside the request's transaction, so "
        "duplicates cannot see it. Mark lease views @transaction.non_atomic_requests, set "
        "IDEMPOTENCY_STORE = 'cache', or turn ATOMIC_REQUESTS off.",
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

HEADER_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^`|~-]+")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
UNSHARED_CACHES = ("locmem.LocMemCache", "filebased.FileBasedCache")
DJANGO_REDIS = "django_redis.cache.RedisCache"
DOTTED = ("SCOPE", "FINGERPRINT", "KEY_VALIDATOR", "REDACT", "ERROR_RESPONSE", "CLOCK")
OPTIONAL_HOOKS = frozenset({"FINGERPRINT", "KEY_VALIDATOR", "REDACT"})


def message(code: str, obj: Any = None, **fields: Any) -> CheckMessage:
    """Return the check message ``code`` from the catalogue, its fields filled in."""
    text, hint = CATALOGUE[code]
    kind = Error if code.startswith("E") else Warning
    return kind(
        text.format(**fields), hint=hint.format(**fields), obj=obj, id=f"django_idempotency.{code}"
    )


def known_settings() -> list[str]:
    """Return the names of every ``IDEMPOTENCY_*`` setting the app reads."""
    names = (name for name, value in vars(Settings).items() if isinstance(value, property))
    return sorted(PREFIX + name for name in names)


def raw(name: str) -> Any:
    """Return the configured value of ``IDEMPOTENCY_<name>``, or its default."""
    return getattr(settings, PREFIX + name, getattr(conf_module, f"DEFAULT_{name}"))


def is_number(value: object) -> bool:
    """Return whether ``value`` is an int or float (``bool`` is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_strings(value: object) -> bool:
    """Return whether ``value`` is a non-string collection of strings."""
    return (
        isinstance(value, Collection)
        and not isinstance(value, (str, bytes))
        and all(isinstance(item, str) for item in value)
    )


def as_duration(value: object) -> timedelta | None:
    """Return ``value`` as a positive ``timedelta``, or ``None`` when it is not one."""
    if is_number(value):
        value = timedelta(seconds=value)  # type: ignore[arg-type]
    return value if isinstance(value, timedelta) and value > timedelta(0) else None


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """Return the errors and warnings about the values of the ``IDEMPOTENCY_*`` settings."""
    issues: list[CheckMessage] = []
    for name in ("TTL", "LEASE"):
        if as_duration(raw(name)) is None:
            issues.append(message("E001", setting=PREFIX + name, value=raw(name)))
    statuses = raw("STORE_STATUSES")
    if not (
        isinstance(statuses, Collection)
        and not isinstance(statuses, (str, bytes))
        and all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
        )
    ):
        issues.append(message("E002", value=statuses))
    for name in ("MISMATCH_STATUS", "IN_PROGRESS_STATUS"):
        value = raw(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 499):
            default = getattr(conf_module, f"DEFAULT_{name}")
            issues.append(message("E003", setting=PREFIX + name, value=value, default=default))
    for name in ("HEADER", "REPLAYED_HEADER"):
        value = raw(name)
        if not (isinstance(value, str) and HEADER_TOKEN.fullmatch(value)):
            default = getattr(conf_module, f"DEFAULT_{name}")
            issues.append(message("E004", setting=PREFIX + name, value=value, default=default))
    low, high = raw("KEY_MIN_LENGTH"), raw("KEY_MAX_LENGTH")
    if not (
        all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
        and 1 <= low <= high <= KEY_COLUMN_LENGTH
    ):
        issues.append(message("E005", min=low, max=high))
    issues.extend(_check_collections())
    issues.extend(_check_choices())
    issues.extend(_check_numbers())
    for name in DOTTED:
        issues.extend(_check_callable(name))
    ttl, lease = as_duration(raw("TTL")), as_duration(raw("LEASE"))
    if ttl is not None and lease is not None and ttl < lease:
        issues.append(message("W006", ttl=ttl, lease=lease))
    if not raw("ENABLED") and not settings.DEBUG:
        issues.append(message("W007"))
    issues.extend(_check_names())
    return issues


def _check_collections() -> Iterable[CheckMessage]:
    for name in ("METHODS", "REPLAY_HEADERS", "FINGERPRINT_INCLUDE", "FINGERPRINT_EXCLUDE"):
        value = raw(name)
        if name == "FINGERPRINT_INCLUDE" and value is None:
            continue
        if not is_strings(value):
            default = list(getattr(conf_module, f"DEFAULT_{name}") or ["amount", "currency"])
            yield message("E006", setting=PREFIX + name, value=value, default=default)
    methods = raw("METHODS")
    if is_strings(methods):
        safe = sorted(SAFE_METHODS.intersection(m.upper() for m in methods))
        if safe:
            yield message("W001", methods=", ".join(safe))


def _check_choices() -> Iterable[CheckMessage]:
    for name, choices in (
        ("MODE", conf_module.MODES),
        ("STORE", conf_module.STORES),
        ("REPLAY", conf_module.REPLAY_CHOICES),
        ("ANONYMOUS", conf_module.ANONYMOUS_CHOICES),
    ):
        value = raw(name)
        if value not in choices:
            yield message("E007", setting=PREFIX + name, value=value, choices=choices)
    if raw("MODE") == conf_module.MODE_ATOMIC and raw("STORE") == conf_module.STORE_CACHE:
        yield message("E008")


def _check_numbers() -> Iterable[CheckMessage]:
    rules = (
        ("LOCK_TIMEOUT", "a number of seconds >= 0, or None to wait as long as the database does"),
        ("WAIT", "a number of seconds >= 0"),
        ("RETRY_AFTER", "an integer number of seconds >= 0"),
        ("MAX_BODY_SIZE", "an integer number of bytes >= 0"),
        ("PURGE_BATCH_SIZE", "an integer number of records >= 1"),
    )
    for name, expected in rules:
        value = raw(name)
        if name == "LOCK_TIMEOUT" and value is None:
            continue
        whole = expected.startswith("an integer")
        minimum = 1 if name == "PURGE_BATCH_SIZE" else 0
        if not (is_number(value) and value >= minimum and (isinstance(value, int) or not whole)):
            yield message("E009", setting=PREFIX + name, value=value, expected=expected)


def _check_callable(name: str) -> list[CheckMessage]:
    setting, value = PREFIX + name, raw(name)
    # IDEMPOTENCY_FINGERPRINT treats any false value as "off"; the other hooks only None/False.
    switched_off = not value if name == "FINGERPRINT" else value is None or value is False
    if name in OPTIONAL_HOOKS and switched_off:
        return []
    if isinstance(value, str):
        try:
            value = import_string(value)
        except Exception as exc:
            return [message("E010", setting=setting, value=raw(name), error=exc)]
    if not callable(value):
        return [message("E011", setting=setting, value=value)]
    return []


def _check_names() -> Iterable[CheckMessage]:
    known = known_settings()
    for name in sorted(n for n in dir(settings) if n.startswith(PREFIX) and n not in known):
        # Compared without the shared prefix, which would make every name look close.
        close = difflib.get_close_matches(
            name.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in known], n=1
        )
        suggestion = f"Did you mean {PREFIX}{close[0]}? " if close else ""
        yield message("W008", setting=name, suggestion=suggestion, docs=DOCS)


def check_database(**kwargs: Any) -> list[CheckMessage]:
    """Return warnings about the database that key records are written to."""
    if raw("STORE") == conf_module.STORE_CACHE:
        return []
    from django_idempotency.models import IdempotencyKey

    alias = router.db_for_write(IdempotencyKey)
    issues: list[CheckMessage] = []
    if not settings.DEBUG and not connections[alias].features.has_select_for_update:
        issues.append(message("W002", obj=IdempotencyKey, alias=alias))
    if raw("MODE") == conf_module.MODE_LEASE and connections[alias].settings_dict.get(
        "ATOMIC_REQUESTS"
    ):
        issues.append(message("W005", obj=IdempotencyKey, alias=alias))
    return issues


def is_django_redis(backend: str) -> bool:
    """Return whether the cache ``BACKEND`` path names django-redis' cache or a subclass of it."""
    try:
        return issubclass(import_string(backend), import_string(DJANGO_REDIS))
    except ImportError:
        return False


def check_cache(**kwargs: Any) -> list[CheckMessage]:
    """Return errors about the cache the cache store uses, when ``IDEMPOTENCY_STORE`` is cache."""
    if raw("STORE") != conf_module.STORE_CACHE:
        return []
    alias = raw("CACHE_ALIAS")
    config = settings.CACHES.get(alias)
    if config is None:
        return [message("E012", value=alias)]
    backend = str(config.get("BACKEND", ""))
    if backend.endswith("dummy.DummyCache"):
        return [message("E013", alias=alias)]
    if backend.endswith(UNSHARED_CACHES):
        return [message("E014", alias=alias, backend=backend)]
    if not is_django_redis(backend):
        return [message("E015", alias=alias, backend=backend)]
    return []


def check_redis_eviction(
    *, databases: Collection[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Return a warning when Redis may evict the cache store's records.

    It connects to Redis, so like Django's database checks it runs only when asked for with
    ``manage.py check --database <alias>`` (and during ``migrate``).
    """
    if not databases or raw("STORE") != conf_module.STORE_CACHE:
        return []
    alias = raw("CACHE_ALIAS")
    config = settings.CACHES.get(alias)
    if config is None or not is_django_redis(str(config.get("BACKEND", ""))):
        return []
    try:
        from django_redis import get_redis_connection  # type: ignore[import-untyped]

        policy = get_redis_connection(alias).info("memory").get("maxmemory_policy")
    except Exception as exc:  # a check reports an unreachable Redis; it must not crash
        return [message("W004", alias=alias, error=exc)]
    if policy != "noeviction":
        return [message("W003", alias=alias, policy=policy)]
    return []
