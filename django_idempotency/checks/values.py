"""System checks of the values of the ``IDEMPOTENCY_*`` settings, and how those values are read."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_idempotency import conf as conf_module
from django_idempotency.checks.catalogue import message
from django_idempotency.conf import KEY_COLUMN_LENGTH, Settings, as_timedelta

PREFIX = "IDEMPOTENCY_"
DOCS = "https://django-idempotency.readthedocs.io/en/latest/"

HEADER_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^`|~-]+")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
DOTTED = ("PRINCIPAL", "SCOPE", "FINGERPRINT", "KEY_VALIDATOR", "REDACT", "ERROR_RESPONSE", "CLOCK")
OPTIONAL_HOOKS = frozenset({"FINGERPRINT", "KEY_VALIDATOR", "REDACT"})


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
    try:
        duration = as_timedelta(value, "")
    except ImproperlyConfigured:
        return None
    return duration if duration > timedelta(0) else None


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
