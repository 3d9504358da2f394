"""Lease mode: the claim commits at once, the view runs outside it, a fencing token guards the end.

Atomic mode ties the key record to the view's database transaction. Lease mode is for views whose
side effects leave the database (a payment provider, an e-mail API) or that must not hold a
transaction open: the claim is committed as in progress with a lease, the view runs, and the
response is stored only if the claim still carries this request's fencing token. A worker that
dies leaves a claim that the next retry may take over once the lease has run out.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from contextlib import nullcontext
from types import TracebackType

from django.db import connections
from django.http import HttpResponseBase

from django_idempotency.decisions import (
    BUSY,
    MAX_CLAIM_ATTEMPTS,
    Finalize,
    Trace,
    View,
    settled,
)
from django_idempotency.events import EXECUTED, LEASE_LOST, RELEASED, UNAVAILABLE
from django_idempotency.exceptions import RequestInProgress
from django_idempotency.policy import Policy
from django_idempotency.responses import capture
from django_idempotency.stores.base import (
    ClaimRequest,
    ClaimTaken,
    Lease,
    LeaseStore,
    StoreUnavailable,
)

logger = logging.getLogger("django_idempotency")

#: First and longest pause between two looks at a claim held by another request (seconds).
POLL_FIRST = 0.05
POLL_MAX = 1.0


def run_lease(
    store: LeaseStore,
    claim: ClaimRequest,
    view: View,
    policy: Policy,
    finalize: Finalize,
    trace: Trace,
) -> HttpResponseBase:
    """Return the response for a lease-mode request: a replay, the view's own, or an error.

    A duplicate of a request still running polls (with backoff) for up to ``policy.wait``
    seconds for its result, then is answered 409.
    """
    deadline = time.monotonic() + policy.wait
    pause = POLL_FIRST
    record = store.lookup(claim.scope, claim.key)
    claims = 0
    while True:
        decision, replayed = settled(record, claim, policy, trace)
        if replayed is not None:
            return replayed
        if decision == BUSY or claims >= MAX_CLAIM_ATTEMPTS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestInProgress(
                    status=policy.in_progress_status, retry_after=policy.retry_after
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, POLL_MAX)
            claim = dataclasses.replace(claim, now=policy.clock())
            record = store.lookup(claim.scope, claim.key)
            continue
        claims += 1
        try:
            lease = store.claim_lease(
                claim,
                replace=record,
                lease_expires_at=claim.now + policy.lease,
                expires_at=claim.now + policy.ttl,
            )
        except ClaimTaken:
            record = store.lookup(claim.scope, claim.key)
            continue
        return _execute(store, lease, view, policy, finalize, trace)


def _execute(
    store: LeaseStore,
    lease: Lease,
    view: View,
    policy: Policy,
    finalize: Finalize,
    trace: Trace,
) -> HttpResponseBase:
    try:
        with Heartbeat(store, lease, policy) if policy.heartbeat else nullcontext():
            response = finalize(view())
    except BaseException:
        trace.decision, trace.detail = RELEASED, "the view raised"
        _release(store, lease)
        raise
    stored = capture(response, policy)
    if stored is None:
        trace.decision, trace.detail = RELEASED, "response status not stored"
        _release(store, lease)
        return response
    now = policy.clock()
    try:
        owned = store.complete(lease, stored, now=now, expires_at=now + policy.ttl)
    except StoreUnavailable as exc:
        # The view has run; its response is the client's. The claim stays in progress until its
        # lease ends, and only then may a retry run the view again.
        trace.decision = UNAVAILABLE
        trace.detail = f"the view ran but its response could not be stored: {exc}"
        return response
    if owned:
        trace.decision = EXECUTED
    else:
        trace.decision = LEASE_LOST
        trace.detail = "the lease ran out and the key was taken over; the response was not stored"
    return response


def _release(store: LeaseStore, lease: Lease) -> None:
    try:
        store.release(lease)
    except StoreUnavailable:
        # The claim will be reclaimable when its lease runs out; the caller's outcome stands.
        logger.warning(
            "idempotency: could not release a lease-mode claim; it expires with its lease"
        )


class Heartbeat:
    """Renew a lease every third of its length while the view runs, from one helper thread.

    The thread is started on entering and stopped and joined on leaving, whatever the view does,
    and it closes the database connections it opened: nothing outlives the request.
    """

    def __init__(self, store: LeaseStore, lease: Lease, policy: Policy) -> None:
        self.store = store
        self.lease = lease
        self.policy = policy
        self.interval = policy.lease.total_seconds() / 3
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="idempotency-heartbeat", daemon=True)
        #: How many renewals succeeded; tests and logs read it.
        self.renewals = 0

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                until = self.policy.clock() + self.policy.lease
                try:
                    if not self.store.renew(self.lease, lease_expires_at=until):
                        return
                except StoreUnavailable:
                    logger.warning("idempotency: could not renew a lease; will try again")
                    continue
                self.renewals += 1
        finally:
            connections.close_all()
