"""What every store hands the engine: records, stored responses, and the claim outcomes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

IN_PROGRESS = "in_progress"
COMPLETED = "completed"


@dataclass(frozen=True)
class StoredResponse:
    """A response as kept for replay; ``body`` is ``None`` when it was not kept."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    def header(self, name: str) -> str | None:
        """Return the stored value of header ``name`` (any case), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


@dataclass(frozen=True)
class Record:
    """A store's snapshot of one key: its claim state and, once completed, its response."""

    pk: object
    fingerprint: str
    status: str
    response: StoredResponse | None
    expires_at: datetime | None
    lease_expires_at: datetime | None = None
    fencing_token: int = 0
    #: The store holds a value it cannot read (another format version): answer "already
    #: processed" whatever the request, and never run the view again for it.
    unreadable: bool = False

    def is_expired(self, now: datetime) -> bool:
        """Return whether the record's retention has ended, so its key is free again."""
        return self.expires_at is not None and self.expires_at <= now

    def is_free(self, now: datetime) -> bool:
        """Return whether a new request may claim the key.

        A lease-mode claim is free once its lease has run out (its owner is presumed dead); any
        other record once its retention has ended.
        """
        if self.status == IN_PROGRESS and self.lease_expires_at is not None:
            return self.lease_expires_at <= now
        return self.is_expired(now)


@dataclass(frozen=True)
class ClaimRequest:
    """What a new claim records about the request that makes it."""

    scope: str
    #: Never shown in a repr: error reports and logs list the locals that hold a claim.
    key: str = field(repr=False)
    method: str
    path: str
    fingerprint: str
    now: datetime
    #: How long the record is kept; an in-progress claim expires after it too, so it never
    #: outlives its retention should something commit it before the view finished.
    ttl: timedelta = timedelta(hours=24)


class ClaimTaken(Exception):
    """Another request holds or completed the key: look the record up again."""


class ClaimBusy(Exception):
    """The key's lock could not be had in time: answer that the request is in progress."""

    def __init__(self, *, retryable: bool = False, database_locked: bool = False) -> None:
        super().__init__()
        #: True when the attempt was rolled back whole (a deadlock victim) and may simply be tried again.
        self.retryable = retryable
        #: True when the whole database was locked (SQLite), not this key: any other request
        #: could have met the same lock.
        self.database_locked = database_locked


class StoreUnavailable(Exception):
    """The store could not be reached or failed; fail closed."""


class IdentityFolded(Exception):
    """The store answered with a record of another scope or key: it compares keys inexactly.

    Never a reason to run the view unprotected, whatever ``fail_open`` says: the store is
    reachable but cannot tell keys apart.
    """

    def __init__(self, using: str) -> None:
        super().__init__(using)
        self.using = using


@dataclass(frozen=True)
class Lease:
    """A committed lease-mode claim: only the holder of ``token`` may complete or release it."""

    scope: str
    key: str = field(repr=False)
    token: int
    pk: object = None


def next_fencing_token(previous: int = 0) -> int:
    """Return a fencing token larger than ``previous`` and than any token issued before now.

    Microseconds since the epoch keep tokens growing even when a record was purged and claimed
    anew, so a stale owner's token never equals a newer owner's.
    """
    return max(previous + 1, time.time_ns() // 1000)


class LeaseStore(Protocol):
    """What lease mode needs from a store; ``DatabaseStore`` and ``CacheStore`` both provide it.

    Every method raises ``StoreUnavailable`` when the store cannot be reached.
    """

    def lookup(self, scope: str, key: str) -> Record | None:
        """Return the record for ``(scope, key)``, or ``None``."""

    def claim_lease(
        self,
        claim: ClaimRequest,
        *,
        replace: Record | None,
        lease_expires_at: datetime,
        expires_at: datetime,
    ) -> Lease:
        """Commit an in-progress claim at once and return its lease.

        ``replace`` is the record the caller found free (expired, or its lease abandoned); it is
        taken over only if it is still that record (same fencing token) and still free at
        ``claim.now``. Raise ``ClaimTaken`` when the key is held or completed by someone else.
        """

    def complete(
        self, lease: Lease, response: StoredResponse, *, now: datetime, expires_at: datetime
    ) -> bool:
        """Store the response if ``lease`` still owns the key; return whether it did."""

    def release(self, lease: Lease) -> bool:
        """Delete the claim if ``lease`` still owns the key; return whether it did."""

    def renew(self, lease: Lease, *, lease_expires_at: datetime) -> bool:
        """Extend the claim's lease if ``lease`` still owns the key; return whether it did."""
