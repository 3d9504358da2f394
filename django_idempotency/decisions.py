"""DESIGN's decisions table, and what one request's handling records about itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpResponse, HttpResponseBase

from django_idempotency.events import REPLAYED
from django_idempotency.exceptions import KeyMismatch
from django_idempotency.policy import Policy
from django_idempotency.responses import replay
from django_idempotency.stores.base import IN_PROGRESS, ClaimRequest, Record, StoredResponse

View = Callable[[], HttpResponseBase]
Finalize = Callable[[HttpResponseBase], HttpResponseBase]

NEW = "new"
REPLAY = "replay"
MISMATCH = "mismatch"
BUSY = "in_progress"

#: How often one request tries to claim a key that keeps changing hands under it.
MAX_CLAIM_ATTEMPTS = 3


def settled(
    record: Record | None, claim: ClaimRequest, policy: Policy, trace: Trace
) -> tuple[str, HttpResponse | None]:
    """Return the decision for ``claim``, and the replay when the key's outcome is already known.

    Raise ``KeyMismatch`` when the key was used for another payload. Both modes start each
    attempt here; what remains for them is ``NEW`` (claim it) or ``BUSY`` (wait or refuse).
    """
    decision, stored = decide(record, claim)
    if stored is not None:
        trace.decision = REPLAYED
        return decision, replay(stored, policy)
    if decision == MISMATCH:
        raise KeyMismatch(status=policy.mismatch_status)
    return decision, None


def decide(record: Record | None, claim: ClaimRequest) -> tuple[str, StoredResponse | None]:
    """Return what to do with ``claim`` given the key's current record, and the response to replay.

    A fingerprint mismatch wins over "in progress": a client reusing a key for another payload
    learns so at once.
    """
    if record is None or record.is_free(claim.now):
        return NEW, None
    if record.unreadable and record.response is not None:
        return REPLAY, record.response
    if record.fingerprint != claim.fingerprint:
        return MISMATCH, None
    if record.status == IN_PROGRESS or record.response is None:
        return BUSY, None
    return REPLAY, record.response


@dataclass
class Trace:
    """What became of one request, filled in as the engine goes; it becomes the logged event."""

    decision: str = ""
    detail: str = ""
