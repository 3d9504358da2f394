"""The app's settings: one typed property per ``IDEMPOTENCY_*`` setting, read at call time."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
UNSAFE_METHODS = ("POST", "PATCH")

MODE_ATOMIC = "atomic"
MODE_LEASE = "lease"
MODES = (MODE_ATOMIC, MODE_LEASE)

STORE_DATABASE = "database"
STORE_CACHE = "cache"
STORES = (STORE_DATABASE, STORE_CACHE)

REPLAY_RESPONSE = "response"
REPLAY_CONFLICT = "conflict"
REPLAY_CHOICES = (REPLAY_RESPONSE, REPLAY_CONFLICT)

ANONYMOUS_SHARED = "shared"
ANONYMOUS_REJECT = "reject"
ANONYMOUS_BYPASS = "bypass"
ANONYMOUS_CHOICES = (ANONYMOUS_SHARED, ANONYMOUS_REJECT, ANONYMOUS_BYPASS)

#: Column sizes of ``IdempotencyKey``; the engine fits keys, scopes and fingerprints to them.
KEY_COLUMN_LENGTH = 255
SCOPE_COLUMN_LENGTH = 255
FINGERPRINT_COLUMN_LENGTH = 64

DEFAULT_ENABLED = True
DEFAULT_HEADER = IDEMPOTENCY_KEY_HEADER
DEFAULT_METHODS = UNSAFE_METHODS
DEFAULT_REQUIRED = False
DEFAULT_KEY_MIN_LENGTH = 1
DEFAULT_KEY_MAX_LENGTH = KEY_COLUMN_LENGTH
DEFAULT_KEY_VALIDATOR = None
DEFAULT_TTL = timedelta(hours=24)
DEFAULT_STORE_STATUSES = frozenset(range(200, 400))
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_REPLAY = REPLAY_RESPONSE
#: What makes a replay the same representation: its metadata and validators, where it points,
#: and what caches may do with it (a replay must not be cacheable where the original was not).
DEFAULT_REPLAY_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Language",
    "Content-Location",
    "Content-Disposition",
    "Location",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Expires",
    "Vary",
)
DEFAULT_REPLAYED_HEADER = REPLAYED_HEADER
DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_RETRY_AFTER = 1
DEFAULT_MISMATCH_STATUS = 422
DEFAULT_IN_PROGRESS_STATUS = 409
DEFAULT_MODE = MODE_ATOMIC
DEFAULT_STORE = STORE_DATABASE
DEFAULT_CACHE_ALIAS = "default"
DEFAULT_CACHE_KEY_PREFIX = "idempotency"
DEFAULT_LEASE = timedelta(seconds=30)
DEFAULT_WAIT = 0.0
DEFAULT_FAIL_OPEN = False
DEFAULT_HEARTBEAT = False
DEFAULT_PURGE_BATCH_SIZE = 1000
DEFAULT_ANONYMOUS = ANONYMOUS_REJECT
DEFAULT_SCOPE = "django_idempotency.scope.default_scope"
DEFAULT_PRINCIPAL = "django_idempotency.scope.principal"
DEFAULT_FINGERPRINT = "django_idempotency.fingerprint.default_fingerprint"
DEFAULT_FINGERPRINT_INCLUDE = None
DEFAULT_FINGERPRINT_EXCLUDE: tuple[str, ...] = ()
DEFAULT_REDACT = None
DEFAULT_ERROR_RESPONSE = "django_idempotency.responses.error_response"
DEFAULT_PROBLEM_TYPE_BASE = "https://django-idempotency.readthedocs.io/en/latest/errors/#"
DEFAULT_CLOCK = "django.utils.timezone.now"


@lru_cache(maxsize=128)
def _import(dotted_path: str) -> Any:
    return import_string(dotted_path)


def resolve_callable(value: Any, setting: str) -> Any:
    """Return ``value`` itself when callable, else the object its dotted path names.

    ``None`` and ``False`` pass through unchanged (they switch a hook off).
    """
    if value is None or value is False or callable(value):
        return value
    if not isinstance(value, str):
        raise ImproperlyConfigured(
            f"{setting} must be a callable or a dotted path to one, not {value!r}."
        )
    try:
        return _import(value)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Could not import {value!r} for setting {setting!r}: {exc}."
        ) from exc


def as_timedelta(value: object, setting: str) -> timedelta:
    """Return ``value`` as a ``timedelta``; numbers are seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise ImproperlyConfigured(
        f"{setting} must be a timedelta or a number of seconds, not {value!r}."
    )


class Settings:
    """Typed access to the ``IDEMPOTENCY_*`` settings; nothing is cached."""

    @property
    def ENABLED(self) -> bool:
        """Return whether the app handles requests at all (False: every view runs unprotected)."""
        return bool(getattr(settings, "IDEMPOTENCY_ENABLED", DEFAULT_ENABLED))

    @property
    def HEADER(self) -> str:
        """Return the name of the request header that carries the key."""
        return str(getattr(settings, "IDEMPOTENCY_HEADER", DEFAULT_HEADER))

    @property
    def METHODS(self) -> Collection[str]:
        """Return the HTTP methods that idempotent views protect."""
        return getattr(settings, "IDEMPOTENCY_METHODS", DEFAULT_METHODS)

    @property
    def REQUIRED(self) -> bool:
        """Return whether a request without a key is refused with 400."""
        return bool(getattr(settings, "IDEMPOTENCY_REQUIRED", DEFAULT_REQUIRED))

    @property
    def KEY_MIN_LENGTH(self) -> int:
        """Return the shortest key accepted."""
        return int(getattr(settings, "IDEMPOTENCY_KEY_MIN_LENGTH", DEFAULT_KEY_MIN_LENGTH))

    @property
    def KEY_MAX_LENGTH(self) -> int:
        """Return the longest key accepted (at most ``KEY_COLUMN_LENGTH``)."""
        return int(getattr(settings, "IDEMPOTENCY_KEY_MAX_LENGTH", DEFAULT_KEY_MAX_LENGTH))

    @property
    def KEY_VALIDATOR(self) -> Callable[[str], object] | None:
        """Return the extra key validator, or None."""
        value = getattr(settings, "IDEMPOTENCY_KEY_VALIDATOR", DEFAULT_KEY_VALIDATOR)
        return resolve_callable(value, "IDEMPOTENCY_KEY_VALIDATOR")  # type: ignore[no-any-return]

    @property
    def TTL(self) -> timedelta:
        """Return how long a completed record is replayed, counted from completion."""
        value = getattr(settings, "IDEMPOTENCY_TTL", DEFAULT_TTL)
        return as_timedelta(value, "IDEMPOTENCY_TTL")

    @property
    def STORE_STATUSES(self) -> Collection[int]:
        """Return the response statuses that are stored and replayed."""
        return getattr(settings, "IDEMPOTENCY_STORE_STATUSES", DEFAULT_STORE_STATUSES)

    @property
    def MAX_BODY_SIZE(self) -> int:
        """Return the largest response body, in bytes, stored for byte-identical replay."""
        return int(getattr(settings, "IDEMPOTENCY_MAX_BODY_SIZE", DEFAULT_MAX_BODY_SIZE))

    @property
    def REPLAY(self) -> str:
        """Return ``"response"`` (replay stored responses) or ``"conflict"`` (store no body)."""
        return str(getattr(settings, "IDEMPOTENCY_REPLAY", DEFAULT_REPLAY))

    @property
    def REPLAY_HEADERS(self) -> Collection[str]:
        """Return the response headers stored and restored on replay."""
        return getattr(settings, "IDEMPOTENCY_REPLAY_HEADERS", DEFAULT_REPLAY_HEADERS)

    @property
    def REPLAYED_HEADER(self) -> str:
        """Return the name of the header that marks a replayed response."""
        return str(getattr(settings, "IDEMPOTENCY_REPLAYED_HEADER", DEFAULT_REPLAYED_HEADER))

    @property
    def LOCK_TIMEOUT(self) -> float | None:
        """Return how many seconds a duplicate waits for the first request (None: no bound)."""
        value = getattr(settings, "IDEMPOTENCY_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)
        return None if value is None else float(value)

    @property
    def RETRY_AFTER(self) -> int:
        """Return the ``Retry-After`` seconds sent with in-progress conflicts."""
        return int(getattr(settings, "IDEMPOTENCY_RETRY_AFTER", DEFAULT_RETRY_AFTER))

    @property
    def MISMATCH_STATUS(self) -> int:
        """Return the status for a key reused with another payload."""
        return int(getattr(settings, "IDEMPOTENCY_MISMATCH_STATUS", DEFAULT_MISMATCH_STATUS))

    @property
    def IN_PROGRESS_STATUS(self) -> int:
        """Return the status for a key whose first request is still running."""
        return int(getattr(settings, "IDEMPOTENCY_IN_PROGRESS_STATUS", DEFAULT_IN_PROGRESS_STATUS))

    @property
    def MODE(self) -> str:
        """Return the execution mode."""
        return str(getattr(settings, "IDEMPOTENCY_MODE", DEFAULT_MODE))

    @property
    def STORE(self) -> str:
        """Return where key records live: ``"database"`` or ``"cache"``."""
        return str(getattr(settings, "IDEMPOTENCY_STORE", DEFAULT_STORE))

    @property
    def CACHE_ALIAS(self) -> str:
        """Return the ``CACHES`` alias the cache store uses."""
        return str(getattr(settings, "IDEMPOTENCY_CACHE_ALIAS", DEFAULT_CACHE_ALIAS))

    @property
    def CACHE_KEY_PREFIX(self) -> str:
        """Return the prefix of the cache store's keys (inside the cache's own ``KEY_PREFIX``)."""
        return str(getattr(settings, "IDEMPOTENCY_CACHE_KEY_PREFIX", DEFAULT_CACHE_KEY_PREFIX))

    @property
    def LEASE(self) -> timedelta:
        """Return how long a lease-mode claim is held before a retry may take it over."""
        value = getattr(settings, "IDEMPOTENCY_LEASE", DEFAULT_LEASE)
        return as_timedelta(value, "IDEMPOTENCY_LEASE")

    @property
    def WAIT(self) -> float:
        """Return how many seconds a lease-mode duplicate polls for the first result (0: 409 at once)."""
        return float(getattr(settings, "IDEMPOTENCY_WAIT", DEFAULT_WAIT))

    @property
    def FAIL_OPEN(self) -> bool:
        """Return whether a view runs unprotected when its store is unreachable (default: 503)."""
        return bool(getattr(settings, "IDEMPOTENCY_FAIL_OPEN", DEFAULT_FAIL_OPEN))

    @property
    def HEARTBEAT(self) -> bool:
        """Return whether a lease-mode claim is renewed while its view runs."""
        return bool(getattr(settings, "IDEMPOTENCY_HEARTBEAT", DEFAULT_HEARTBEAT))

    @property
    def PURGE_BATCH_SIZE(self) -> int:
        """Return how many records one purge batch deletes, each batch in its own transaction."""
        return int(getattr(settings, "IDEMPOTENCY_PURGE_BATCH_SIZE", DEFAULT_PURGE_BATCH_SIZE))

    @property
    def ANONYMOUS(self) -> str:
        """Return what a keyed request with no principal gets: reject (default), shared or bypass."""
        return str(getattr(settings, "IDEMPOTENCY_ANONYMOUS", DEFAULT_ANONYMOUS))

    @property
    def PRINCIPAL(self) -> Callable[..., str | None]:
        """Return the function that names a request's caller, ``None`` for nobody."""
        value = getattr(settings, "IDEMPOTENCY_PRINCIPAL", DEFAULT_PRINCIPAL)
        return resolve_callable(value, "IDEMPOTENCY_PRINCIPAL")  # type: ignore[no-any-return]

    @property
    def SCOPE(self) -> Callable[..., str]:
        """Return the function that names a request's scope."""
        value = getattr(settings, "IDEMPOTENCY_SCOPE", DEFAULT_SCOPE)
        return resolve_callable(value, "IDEMPOTENCY_SCOPE")  # type: ignore[no-any-return]

    @property
    def FINGERPRINT(self) -> Callable[..., str] | None:
        """Return the function that fingerprints a request, or None for key-only matching."""
        value = getattr(settings, "IDEMPOTENCY_FINGERPRINT", DEFAULT_FINGERPRINT)
        return resolve_callable(value or None, "IDEMPOTENCY_FINGERPRINT")  # type: ignore[no-any-return]

    @property
    def FINGERPRINT_INCLUDE(self) -> Collection[str] | None:
        """Return the only body fields fingerprinted, or None for all of them."""
        return getattr(settings, "IDEMPOTENCY_FINGERPRINT_INCLUDE", DEFAULT_FINGERPRINT_INCLUDE)

    @property
    def FINGERPRINT_EXCLUDE(self) -> Collection[str]:
        """Return the body fields left out of the fingerprint."""
        return getattr(settings, "IDEMPOTENCY_FINGERPRINT_EXCLUDE", DEFAULT_FINGERPRINT_EXCLUDE)

    @property
    def REDACT(self) -> Callable[..., Any] | None:
        """Return the hook that redacts the stored copy of a response, or None."""
        value = getattr(settings, "IDEMPOTENCY_REDACT", DEFAULT_REDACT)
        return resolve_callable(value, "IDEMPOTENCY_REDACT")  # type: ignore[no-any-return]

    @property
    def ERROR_RESPONSE(self) -> Callable[..., Any]:
        """Return the factory that turns an idempotency error into a response."""
        value = getattr(settings, "IDEMPOTENCY_ERROR_RESPONSE", DEFAULT_ERROR_RESPONSE)
        return resolve_callable(value, "IDEMPOTENCY_ERROR_RESPONSE")  # type: ignore[no-any-return]

    @property
    def PROBLEM_TYPE_BASE(self) -> str:
        """Return the URI prefix of every problem ``type``."""
        return str(getattr(settings, "IDEMPOTENCY_PROBLEM_TYPE_BASE", DEFAULT_PROBLEM_TYPE_BASE))

    @property
    def CLOCK(self) -> Callable[[], datetime]:
        """Return the clock that timestamps records and decides expiry."""
        value = getattr(settings, "IDEMPOTENCY_CLOCK", DEFAULT_CLOCK)
        return resolve_callable(value, "IDEMPOTENCY_CLOCK")  # type: ignore[no-any-return]


conf = Settings()
