"""The engine: every idempotency rule, applied to one request. Adapters only call :func:`handle`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from django_idempotency.conf import (
    ANONYMOUS_BYPASS,
    ANONYMOUS_REJECT,
    FINGERPRINT_COLUMN_LENGTH,
    KEY_COLUMN_LENGTH,
    conf,
)
from django_idempotency.exceptions import (
    AuthenticationRequired,
    IdempotencyError,
    KeyInvalid,
    KeyMismatch,
    KeyMissing,
    RequestInProgress,
    StorageUnavailable,
)
from django_idempotency.policy import Policy
from django_idempotency.responses import capture, drf_view, replay
from django_idempotency.scope import compose_scope, principal
from django_idempotency.stores.base import (
    IN_PROGRESS,
    ClaimBusy,
    ClaimRequest,
    ClaimTaken,
    Record,
    StoredResponse,
    StoreUnavailable,
)
from django_idempotency.stores.database import DatabaseStore

View = Callable[[], HttpResponseBase]
Finalize = Callable[[HttpResponseBase], HttpResponseBase]

HANDLED = "_idempotency_handled"

#: How often one request tries to claim a key that keeps changing hands under it.
MAX_CLAIM_ATTEMPTS = 3

NEW = "new"
REPLAY = "replay"
MISMATCH = "mismatch"
BUSY = "in_progress"


def finalizer(request: HttpRequest) -> Finalize:
    """Return the function that makes a view's response final, so its bytes can be stored.

    DRF responses are negotiated and rendered by the view after the handler returns; doing it
    here with the view's own ``finalize_response`` gives the same bytes the client will get.
    """
    view = drf_view(request)

    def finalize(response: HttpResponseBase) -> HttpResponseBase:
        if view is not None:
            # DRF accepts any HttpResponseBase here (it asserts exactly that); its stubs say Response.
            response = view.finalize_response(request, response, *view.args, **view.kwargs)  # type: ignore[arg-type]
        render = getattr(response, "render", None)
        if callable(render):
            render()
        return response

    return finalize


def handle(request: HttpRequest, view: View, policy: Policy) -> HttpResponseBase:
    """Return the response for ``request``: the view's own, a replay, or a problem response.

    ``view`` runs the view and returns its response. It runs at most once, inside the
    transaction that claims the key.
    """
    if (
        not conf.ENABLED
        or (request.method or "").upper() not in policy.methods
        or getattr(request, HANDLED, False)
    ):
        return view()
    # A view wrapped twice (mixin and decorator) must not meet its own uncommitted claim.
    setattr(request, HANDLED, True)
    try:
        return _handle(request, view, policy, finalizer(request))
    except IdempotencyError as error:
        return policy.error_response(request, error)


def _handle(
    request: HttpRequest, view: View, policy: Policy, finalize: Finalize
) -> HttpResponseBase:
    key = policy.key(request)
    if key is None:
        if policy.required:
            raise KeyMissing
        return view()
    if principal(request) is None:
        if policy.anonymous == ANONYMOUS_REJECT:
            raise AuthenticationRequired
        if policy.anonymous == ANONYMOUS_BYPASS:
            return view()
    if not 0 < len(key) <= KEY_COLUMN_LENGTH:
        # Keys from a custom hook skip the header parser's bounds; the column still has them.
        raise KeyInvalid(f"The Idempotency-Key must be 1 to {KEY_COLUMN_LENGTH} characters long.")
    claim = ClaimRequest(
        scope=compose_scope(policy.scope(request)),
        key=key,
        method=(request.method or "").upper(),
        path=request.get_full_path(),
        fingerprint=fingerprint_for(request, policy),
        now=policy.clock(),
    )
    store = DatabaseStore()
    try:
        return _run_atomic(store, claim, view, policy, finalize)
    except StoreUnavailable as exc:
        raise StorageUnavailable(retry_after=policy.retry_after) from exc


def fingerprint_for(request: HttpRequest, policy: Policy) -> str:
    """Return the request's fingerprint, ``""`` when fingerprints are off.

    A custom fingerprint longer than its column is stored as its SHA-256 (64 hex characters).
    """
    if policy.fingerprint is None:
        return ""
    fingerprint = policy.fingerprint(request)
    if len(fingerprint) <= FINGERPRINT_COLUMN_LENGTH:
        return fingerprint
    return hashlib.sha256(fingerprint.encode()).hexdigest()


def decide(record: Record | None, claim: ClaimRequest) -> tuple[str, StoredResponse | None]:
    """Return what to do with ``claim`` given the key's current record, and the response to replay.

    This is DESIGN's decisions table. A fingerprint mismatch wins over "in progress": a client
    reusing a key for another payload learns so at once.
    """
    if record is None or record.is_free(claim.now):
        return NEW, None
    if record.fingerprint != claim.fingerprint:
        return MISMATCH, None
    if record.status == IN_PROGRESS or record.response is None:
        return BUSY, None
    return REPLAY, record.response


def _run_atomic(
    store: DatabaseStore, claim: ClaimRequest, view: View, policy: Policy, finalize: Finalize
) -> HttpResponseBase:
    record = store.lookup(claim.scope, claim.key)
    for _attempt in range(MAX_CLAIM_ATTEMPTS):
        decision, stored = decide(record, claim)
        if stored is not None:
            return replay(stored, policy)
        if decision == MISMATCH:
            raise KeyMismatch(status=policy.mismatch_status)
        if decision == BUSY:
            break
        try:
            return _execute(store, claim, record, view, policy, finalize)
        except ClaimTaken:
            record = store.lookup(claim.scope, claim.key)
        except ClaimBusy as busy:
            if not busy.retryable:
                break
            record = store.lookup(claim.scope, claim.key)
    raise RequestInProgress(status=policy.in_progress_status, retry_after=policy.retry_after)


def _execute(
    store: DatabaseStore,
    claim: ClaimRequest,
    record: Record | None,
    view: View,
    policy: Policy,
    finalize: Finalize,
) -> HttpResponseBase:
    with store.atomic_claim(claim, replace=record, lock_timeout=policy.lock_timeout) as held:
        response = finalize(view())
        stored = None if held.rolled_back else capture(response, policy)
        if stored is None:
            held.release()
        else:
            now = policy.clock()
            held.complete(stored, now=now, expires_at=now + policy.ttl)
    return response
