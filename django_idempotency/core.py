"""The engine: every idempotency rule, applied to one request. Adapters only call :func:`handle`."""

from __future__ import annotations

import hashlib
import logging
import time

from django.db import DatabaseError, connections, transaction
from django.http import HttpRequest, HttpResponseBase

from django_idempotency.conf import (
    ANONYMOUS_BYPASS,
    ANONYMOUS_SHARED,
    FINGERPRINT_COLUMN_LENGTH,
    KEY_COLUMN_LENGTH,
    MODE_LEASE,
    STORE_CACHE,
    conf,
)
from django_idempotency.decisions import (
    BUSY,
    MAX_CLAIM_ATTEMPTS,
    Finalize,
    Trace,
    View,
    settled,
)
from django_idempotency.events import (
    EXECUTED,
    IN_PROGRESS,
    LEASE_LOST,
    REJECTED,
    RELEASED,
    REPLAYED,
    UNAVAILABLE,
    UNPROTECTED,
    Event,
    emit,
    key_hash,
)
from django_idempotency.events import MISMATCH as MISMATCHED
from django_idempotency.exceptions import (
    AlreadyProcessed,
    AuthenticationRequired,
    IdempotencyError,
    KeyInvalid,
    KeyMismatch,
    KeyMissing,
    RequestInProgress,
    StorageUnavailable,
    TransactionAborted,
)
from django_idempotency.keys import MaskedKey
from django_idempotency.lease import run_lease
from django_idempotency.policy import Policy
from django_idempotency.responses import capture, drf_view
from django_idempotency.scope import ANONYMOUS_PRINCIPAL, compose_scope, route
from django_idempotency.stores.base import (
    ClaimBusy,
    ClaimRequest,
    ClaimTaken,
    IdentityFolded,
    LeaseStore,
    Record,
    StoreUnavailable,
)
from django_idempotency.stores.database import DatabaseStore
from django_idempotency.stores.locking import is_aborted_transaction, is_serializable

logger = logging.getLogger("django_idempotency")

HANDLED = "_idempotency_handled"

#: The decision logged for each error the engine answers with.
ERROR_DECISIONS: dict[type[IdempotencyError], str] = {
    KeyMismatch: MISMATCHED,
    RequestInProgress: IN_PROGRESS,
    AlreadyProcessed: REPLAYED,
    StorageUnavailable: UNAVAILABLE,
    TransactionAborted: RELEASED,
}


#: Decisions under which the view did not run, so the request wrote nothing.
UNEXECUTED = frozenset({REPLAYED, IN_PROGRESS, MISMATCHED})


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

    ``view`` runs the view and returns its response; it runs at most once. One event is logged
    (and its signal sent) for every request handled here.
    """
    if (
        not conf.ENABLED
        or (request.method or "").upper() not in policy.methods
        or getattr(request, HANDLED, False)
    ):
        return view()
    # A view wrapped twice (mixin and decorator) must not meet its own uncommitted claim.
    setattr(request, HANDLED, True)
    started = time.perf_counter()
    trace = Trace()
    claim: ClaimRequest | None = None
    response: HttpResponseBase | None = None
    try:
        claim = _claim_request(request, policy, trace)
        response = view() if claim is None else _run(request, claim, view, policy, trace)
    except IdempotencyError as error:
        trace.decision = ERROR_DECISIONS.get(type(error), REJECTED)
        response = policy.error_response(request, error)
    finally:
        # Also when the view raised: its claim was released, and that is worth an event too.
        emit(
            request,
            Event(
                decision=trace.decision,
                method=(request.method or "").upper(),
                path=request.path,
                mode=policy.mode,
                store=policy.store,
                scope=claim.scope if claim else "",
                key_hash=key_hash(claim.key) if claim else "",
                status=None if response is None else response.status_code,
                duration_ms=(time.perf_counter() - started) * 1000,
                detail=trace.detail,
            ),
        )
    if claim is not None and trace.decision in UNEXECUTED and policy.store != STORE_CACHE:
        _discard_outer_transaction(DatabaseStore())
    return response


def _claim_request(request: HttpRequest, policy: Policy, trace: Trace) -> ClaimRequest | None:
    """Return the request's claim, or ``None`` when the view runs unprotected."""
    raw_key = policy.key(request)
    if raw_key is None:
        if policy.required:
            raise KeyMissing
        trace.decision, trace.detail = UNPROTECTED, "no key"
        return None
    key = MaskedKey(raw_key)
    del raw_key
    caller = policy.principal(request)
    if caller is None:
        # A keyed request from nobody in particular: sharing one scope among every such caller
        # is opted into per view, never assumed (fail closed).
        if policy.anonymous == ANONYMOUS_BYPASS:
            trace.decision, trace.detail = UNPROTECTED, "anonymous request bypassed"
            return None
        if policy.anonymous != ANONYMOUS_SHARED:
            raise AuthenticationRequired
    if policy.scope is None:
        method = (request.method or "").upper()
        scope = compose_scope(caller or ANONYMOUS_PRINCIPAL, method, route(request))
    else:
        scope = compose_scope(policy.scope(request))
    if not 0 < len(key) <= KEY_COLUMN_LENGTH:
        # Keys from a custom hook skip the header parser's bounds; the column still has them.
        raise KeyInvalid(f"The Idempotency-Key must be 1 to {KEY_COLUMN_LENGTH} characters long.")
    return ClaimRequest(
        scope=scope,
        key=key,
        method=(request.method or "").upper(),
        path=request.get_full_path(),
        fingerprint=fingerprint_for(request, policy),
        now=policy.clock(),
        ttl=policy.ttl,
    )


def _run(
    request: HttpRequest, claim: ClaimRequest, view: View, policy: Policy, trace: Trace
) -> HttpResponseBase:
    finalize = finalizer(request)
    try:
        if policy.mode == MODE_LEASE:
            store = lease_store(policy)
            if not isinstance(store, DatabaseStore) or not connections[store.using].in_atomic_block:
                return run_lease(store, claim, view, policy, finalize, trace)
            # A claim cannot commit before the transaction around the view does (ATOMIC_REQUESTS,
            # a test case): the claim then lives in that transaction, exactly as in atomic mode.
            trace.detail = "lease mode inside a transaction: the claim commits with it"
        else:
            store = DatabaseStore()
        return _run_atomic(store, claim, view, policy, finalize, trace)
    except ClaimBusy as exc:
        raise _busy(exc, policy) from exc
    except IdentityFolded as exc:
        logger.error(
            "idempotency: the key records on database %r compare keys inexactly (case-, accent- "
            "or space-insensitive collation); the request was refused. Run "
            "'manage.py check --database %s' and migrate django_idempotency.",
            exc.using,
            exc.using,
        )
        trace.detail = "the store compares keys inexactly"
        raise StorageUnavailable(
            "The idempotency store cannot tell this key from another one; the request was not "
            "processed.",
            retry_after=policy.retry_after,
        ) from exc
    except StoreUnavailable as exc:
        if not policy.fail_open:
            raise StorageUnavailable(retry_after=policy.retry_after) from exc
    # Only reached before the view ran: a store failure after it is handled where it happens.
    trace.decision = UNAVAILABLE
    trace.detail = "fail open: the store is unreachable, the view ran unprotected"
    return view()


def _discard_outer_transaction(store: DatabaseStore) -> None:
    """Mark a surrounding transaction (``ATOMIC_REQUESTS``) for rollback: the view did not run.

    A replay or a refusal wrote nothing, yet under PostgreSQL's SERIALIZABLE its lookup still
    takes part in the commit-time checks, and the commit could fail with a serialization error
    (a 500) after the answer was decided. Rolling the request's transaction back has nothing to
    lose. Only there: Django refuses further queries in a transaction marked for rollback.
    """
    connection = connections[store.using]
    if connection.in_atomic_block and is_serializable(connection):
        transaction.set_rollback(True, using=store.using)


def lease_store(policy: Policy) -> LeaseStore:
    """Return the store that lease mode uses for ``policy``."""
    if policy.store == STORE_CACHE:
        from django_idempotency.stores.cache import CacheStore

        return CacheStore()
    return DatabaseStore()


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


def _run_atomic(
    store: DatabaseStore,
    claim: ClaimRequest,
    view: View,
    policy: Policy,
    finalize: Finalize,
    trace: Trace,
) -> HttpResponseBase:
    record = store.lookup(claim.scope, claim.key)
    for _attempt in range(MAX_CLAIM_ATTEMPTS):
        decision, replayed = settled(record, claim, policy, trace)
        if replayed is not None:
            return replayed
        if decision == BUSY:
            break
        try:
            return _execute_atomic(store, claim, record, view, policy, finalize, trace)
        except ClaimTaken:
            record = store.lookup(claim.scope, claim.key)
        except ClaimBusy as busy:
            if not busy.retryable:
                raise _busy(busy, policy) from busy
            record = store.lookup(claim.scope, claim.key)
    raise RequestInProgress(status=policy.in_progress_status, retry_after=policy.retry_after)


def _busy(busy: ClaimBusy, policy: Policy) -> RequestInProgress:
    """Return the 409 for a claim that could not get its lock in time.

    SQLite locks the whole database, so there the lock says nothing about this key.
    """
    if busy.database_locked:
        return RequestInProgress(
            "The database is busy with another request; nothing was processed. Retry later.",
            status=policy.in_progress_status,
            retry_after=policy.retry_after,
        )
    return RequestInProgress(status=policy.in_progress_status, retry_after=policy.retry_after)


def _execute_atomic(
    store: DatabaseStore,
    claim: ClaimRequest,
    record: Record | None,
    view: View,
    policy: Policy,
    finalize: Finalize,
    trace: Trace,
) -> HttpResponseBase:
    with store.atomic_claim(claim, replace=record, lock_timeout=policy.lock_timeout) as held:
        trace.decision, trace.detail = RELEASED, "the view raised"
        response = finalize(view())
        stored = None if held.rolled_back else capture(response, policy)
        if stored is None:
            trace.detail = (
                "the transaction was marked for rollback"
                if held.rolled_back
                else "response status not stored"
            )
            held.release()
            return response
        now = policy.clock()
        try:
            kept = held.complete(stored, now=now, expires_at=now + policy.ttl)
        except DatabaseError as exc:
            if not is_aborted_transaction(connections[store.using], exc):
                raise
            held.release()
            trace.detail = "the view caught a database error that aborted its transaction"
            raise TransactionAborted from exc
        if kept:
            trace.decision, trace.detail = EXECUTED, ""
        else:
            trace.decision = LEASE_LOST
            trace.detail = (
                "the claim was gone when the response was stored: a statement in the view "
                "committed it early (DDL on MariaDB or MySQL) and it was deleted since"
            )
    return response
