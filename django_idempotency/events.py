"""One event per handled request: the engine's decision, sent as a signal and logged once."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

from django.dispatch import Signal
from django.http import HttpRequest

from django_idempotency import signals
from django_idempotency.models import IdempotencyKey

logger = logging.getLogger("django_idempotency")

EXECUTED = "executed"
REPLAYED = "replayed"
MISMATCH = "mismatch"
IN_PROGRESS = "in_progress"
RELEASED = "released"
LEASE_LOST = "lease_lost"
#: Refused before any store was asked: a missing or malformed key, an anonymous request refused.
REJECTED = "rejected"
#: The store could not be reached: 503, or the view ran unprotected when ``fail_open`` is on.
UNAVAILABLE = "unavailable"
#: The view ran without protection: no key (optional), or an anonymous request bypassed.
UNPROTECTED = "unprotected"

SIGNALS: dict[str, Signal] = {
    EXECUTED: signals.executed,
    REPLAYED: signals.replayed,
    MISMATCH: signals.mismatch,
    IN_PROGRESS: signals.in_progress,
    RELEASED: signals.released,
    LEASE_LOST: signals.lease_lost,
    REJECTED: signals.rejected,
}

LEVELS = {
    UNPROTECTED: logging.DEBUG,
    LEASE_LOST: logging.WARNING,
    UNAVAILABLE: logging.WARNING,
}


def key_hash(key: str) -> str:
    """Return the short digest logged instead of a key: the first 12 hex digits of its SHA-256.

    An operator holding a client's key finds its log lines with
    ``hashlib.sha256(key.encode()).hexdigest()[:12]``.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Event:
    """What the engine decided for one request, and what came of it."""

    decision: str
    method: str
    path: str
    mode: str
    store: str
    scope: str = ""
    key_hash: str = ""
    status: int | None = None
    duration_ms: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the event's fields as a plain dict (what the log record carries)."""
        return asdict(self)


def emit(request: HttpRequest, event: Event) -> None:
    """Log ``event`` once on the ``django_idempotency`` logger and send its signal, if it has one.

    A failing signal receiver is logged and never changes the response.
    """
    level = LEVELS.get(event.decision, logging.INFO)
    if logger.isEnabledFor(level):
        _log(level, event)
    signal = SIGNALS.get(event.decision)
    if signal is None or not signal.has_listeners(IdempotencyKey):
        return
    for receiver, result in signal.send_robust(sender=IdempotencyKey, request=request, event=event):
        if isinstance(result, Exception):
            logger.error("idempotency signal receiver %r failed", receiver, exc_info=result)


def _log(level: int, event: Event) -> None:
    logger.log(
        level,
        "idempotency %s: %s %s status=%s key=%s scope=%r %.1f ms%s",
        event.decision,
        event.method,
        event.path,
        event.status,
        event.key_hash or "-",
        event.scope,
        event.duration_ms,
        f" ({event.detail})" if event.detail else "",
        extra={"idempotency": event.as_dict()},
    )
