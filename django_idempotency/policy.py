"""The per-view policy: decorator keywords or mixin attributes, each falling back to a setting."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase

from django_idempotency.conf import (
    ANONYMOUS_CHOICES,
    KEY_COLUMN_LENGTH,
    MODE_ATOMIC,
    MODE_LEASE,
    MODES,
    REPLAY_CHOICES,
    STORE_CACHE,
    STORES,
    as_timedelta,
    conf,
    resolve_callable,
)
from django_idempotency.exceptions import IdempotencyError
from django_idempotency.keys import parse_key

ErrorResponseFactory = Callable[[HttpRequest, IdempotencyError], HttpResponseBase]

#: Every option ``@idempotent(...)`` takes and ``IdempotentMixin`` reads as ``idempotency_<name>``.
OPTIONS = (
    "methods",
    "required",
    "ttl",
    "store_statuses",
    "lock_timeout",
    "retry_after",
    "mismatch_status",
    "in_progress_status",
    "replay",
    "max_body_size",
    "anonymous",
    "principal",
    "mode",
    "store",
    "lease",
    "wait",
    "fail_open",
    "heartbeat",
    "scope",
    "fingerprint",
    "fingerprint_include",
    "fingerprint_exclude",
    "key_validator",
    "redact",
    "error_response",
)


class Options(TypedDict, total=False):
    """The keyword options of ``@idempotent``; each defaults to the ``IDEMPOTENCY_*`` setting."""

    methods: Collection[str]
    required: bool
    ttl: timedelta | int | float
    store_statuses: Collection[int]
    lock_timeout: float | None
    retry_after: int
    mismatch_status: int
    in_progress_status: int
    replay: str
    max_body_size: int
    anonymous: str
    principal: Callable[[HttpRequest], str | None] | str
    mode: str
    store: str
    lease: timedelta | int | float
    wait: float
    fail_open: bool
    heartbeat: bool
    scope: Callable[[HttpRequest], str] | str
    fingerprint: Callable[..., str] | str | bool | None
    fingerprint_include: Collection[str] | None
    fingerprint_exclude: Collection[str]
    key_validator: Callable[[str], object] | str | None
    redact: Callable[..., Any] | str | None
    error_response: ErrorResponseFactory | str


@dataclass(frozen=True)
class Policy:
    """Everything the engine needs to know about one view, resolved against the settings."""

    methods: frozenset[str]
    required: bool
    ttl: timedelta
    store_statuses: frozenset[int]
    lock_timeout: float | None
    retry_after: int
    mismatch_status: int
    in_progress_status: int
    replay: str
    max_body_size: int
    anonymous: str
    mode: str
    store: str
    lease: timedelta
    wait: float
    fail_open: bool
    heartbeat: bool
    #: ``None``: the default scope, built by the engine from ``principal``, method and route.
    scope: Callable[[HttpRequest], str] | None
    principal: Callable[[HttpRequest], str | None]
    key: Callable[[HttpRequest], str | None]
    fingerprint: Callable[[HttpRequest], str] | None
    redact: Callable[..., Any] | None
    error_response: ErrorResponseFactory
    replay_headers: frozenset[str]
    replayed_header: str
    clock: Callable[[], datetime]

    @classmethod
    def build(cls, **options: Any) -> Policy:
        """Return the policy for these options; an option left out or ``None`` takes its setting."""
        check_options(options)

        def pick(name: str, default: Any) -> Any:
            value = options.get(name)
            return default if value is None else value

        fingerprint = pick("fingerprint", conf.FINGERPRINT)
        fingerprint = resolve_callable(fingerprint or None, "fingerprint")
        include = pick("fingerprint_include", conf.FINGERPRINT_INCLUDE)
        exclude = pick("fingerprint_exclude", conf.FINGERPRINT_EXCLUDE)
        if fingerprint is not None and (include is not None or exclude):
            fingerprint = functools.partial(
                fingerprint,
                include=None if include is None else frozenset(include),
                exclude=frozenset(exclude),
            )
        validator = resolve_callable(pick("key_validator", conf.KEY_VALIDATOR), "key_validator")
        header, min_length, max_length = conf.HEADER, conf.KEY_MIN_LENGTH, conf.KEY_MAX_LENGTH
        _require(
            1 <= min_length <= max_length <= KEY_COLUMN_LENGTH,
            "key_max_length",
            (min_length, max_length),
            f"bounds with 1 <= IDEMPOTENCY_KEY_MIN_LENGTH <= IDEMPOTENCY_KEY_MAX_LENGTH <= "
            f"{KEY_COLUMN_LENGTH} (the key column's size)",
        )

        def key(request: HttpRequest) -> str | None:
            return parse_key(
                request.headers.get(header),
                min_length=min_length,
                max_length=max_length,
                validator=validator,
            )

        lock_timeout = pick("lock_timeout", conf.LOCK_TIMEOUT)
        policy = cls(
            methods=frozenset(m.upper() for m in pick("methods", conf.METHODS)),
            required=bool(pick("required", conf.REQUIRED)),
            ttl=as_timedelta(pick("ttl", conf.TTL), "ttl"),
            store_statuses=frozenset(pick("store_statuses", conf.STORE_STATUSES)),
            lock_timeout=None if lock_timeout is None else float(lock_timeout),
            retry_after=int(pick("retry_after", conf.RETRY_AFTER)),
            mismatch_status=int(pick("mismatch_status", conf.MISMATCH_STATUS)),
            in_progress_status=int(pick("in_progress_status", conf.IN_PROGRESS_STATUS)),
            replay=pick("replay", conf.REPLAY),
            max_body_size=int(pick("max_body_size", conf.MAX_BODY_SIZE)),
            anonymous=pick("anonymous", conf.ANONYMOUS),
            mode=pick("mode", conf.MODE),
            store=pick("store", conf.STORE),
            lease=as_timedelta(pick("lease", conf.LEASE), "lease"),
            wait=float(pick("wait", conf.WAIT)),
            fail_open=bool(pick("fail_open", conf.FAIL_OPEN)),
            heartbeat=bool(pick("heartbeat", conf.HEARTBEAT)),
            scope=_custom_scope(resolve_callable(pick("scope", conf.SCOPE), "scope")),
            principal=resolve_callable(pick("principal", conf.PRINCIPAL), "principal"),
            key=key,
            fingerprint=fingerprint,
            redact=resolve_callable(pick("redact", conf.REDACT), "redact"),
            error_response=resolve_callable(
                pick("error_response", conf.ERROR_RESPONSE), "error_response"
            ),
            replay_headers=frozenset(h.lower() for h in conf.REPLAY_HEADERS),
            replayed_header=conf.REPLAYED_HEADER,
            clock=conf.CLOCK,
        )
        policy.validate()
        return policy

    @classmethod
    def cached(cls, **options: Any) -> Policy:
        """Return the policy for these options, built once until an ``IDEMPOTENCY_*`` setting changes.

        Building a policy resolves dotted paths and validates every value; a view's options do
        not change between requests, so it is done once per distinct set of options. Settings
        changed through ``override_settings`` (or pytest-django's ``settings``) are picked up.
        """
        # repr() tells lists and callables apart by value and identity; options are few and small.
        cache_key = repr(sorted(options.items()))
        policy = _POLICIES.get(cache_key)
        if policy is None:
            policy = cls.build(**options)
            with _POLICIES_LOCK:
                if len(_POLICIES) >= _POLICIES_MAX:
                    _POLICIES.clear()
                _POLICIES[cache_key] = policy
        return policy

    def validate(self) -> None:
        """Raise ``ImproperlyConfigured`` naming the first option whose value cannot work."""
        _require(self.mode in MODES, "mode", self.mode, f"one of {MODES}")
        _require(self.store in STORES, "store", self.store, f"one of {STORES}")
        _require(
            not (self.mode == MODE_ATOMIC and self.store == STORE_CACHE),
            "mode",
            self.mode,
            f"{MODE_LEASE!r} with the cache store (atomic mode needs the database store)",
        )
        _require(self.lease > timedelta(0), "lease", self.lease, "a positive duration")
        _require(self.wait >= 0, "wait", self.wait, "a number of seconds >= 0")
        _require(self.replay in REPLAY_CHOICES, "replay", self.replay, f"one of {REPLAY_CHOICES}")
        _require(
            self.anonymous in ANONYMOUS_CHOICES,
            "anonymous",
            self.anonymous,
            f"one of {ANONYMOUS_CHOICES}",
        )
        _require(self.ttl > timedelta(0), "ttl", self.ttl, "a positive duration")
        _require(
            self.lock_timeout is None or self.lock_timeout >= 0,
            "lock_timeout",
            self.lock_timeout,
            "a number of seconds >= 0, or None to wait as long as the database does",
        )
        for name in ("mismatch_status", "in_progress_status"):
            status = getattr(self, name)
            _require(400 <= status <= 499, name, status, "a 4xx status code")
        _require(
            self.max_body_size >= 0, "max_body_size", self.max_body_size, "a size in bytes >= 0"
        )

    def with_hooks(
        self,
        *,
        key: Callable[[HttpRequest], str | None] | None = None,
        scope: Callable[[HttpRequest], str] | None = None,
        fingerprint: Callable[[HttpRequest], str] | None = None,
    ) -> Policy:
        """Return a copy whose key, scope and fingerprint functions are replaced where given."""
        changes: dict[str, Any] = {}
        if key is not None:
            changes["key"] = key
        if scope is not None:
            changes["scope"] = scope
        if fingerprint is not None and self.fingerprint is not None:
            changes["fingerprint"] = fingerprint
        return replace(self, **changes)


_POLICIES: dict[str, Policy] = {}
_POLICIES_LOCK = threading.Lock()
#: Bounds the cache should options be built dynamically per request (a mixin hook may do that).
_POLICIES_MAX = 1024


#: Grows whenever a setting that policies read changes, so caches of policies know to rebuild.
_generation = 0


def generation() -> int:
    """Return the settings generation: it changes whenever an ``IDEMPOTENCY_*`` setting does."""
    return _generation


@receiver(setting_changed)
def _forget_policies(*, setting: str, **kwargs: Any) -> None:
    global _generation
    if setting.startswith("IDEMPOTENCY_") or setting in ("CACHES", "DATABASES"):
        _POLICIES.clear()
        _generation += 1


def _custom_scope(
    function: Callable[[HttpRequest], str],
) -> Callable[[HttpRequest], str] | None:
    """Return ``function``, or ``None`` when it is the default scope (the engine builds that one)."""
    from django_idempotency.scope import default_scope

    return None if function is default_scope else function


def check_options(options: Collection[str]) -> None:
    """Raise ``TypeError`` for an option name the app does not know."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"Unknown idempotency option(s) {', '.join(map(repr, unknown))}; "
            f"valid options are: {', '.join(OPTIONS)}."
        )


def _require(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        setting = f"IDEMPOTENCY_{name.upper()}"
        raise ImproperlyConfigured(
            f"The idempotency option {name!r} (or setting {setting}) is {value!r}; it must be {expected}."
        )
