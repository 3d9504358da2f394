"""What every store hands the engine: records, stored responses, and the claim outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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

    def is_expired(self, now: datetime) -> bool:
        """Return whether the record's retention has ended, so its key is free again."""
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class ClaimRequest:
    """What a new claim records about the request that makes it."""

    scope: str
    key: str
    method: str
    path: str
    fingerprint: str
    now: datetime


class ClaimTaken(Exception):
    """Another request holds or completed the key: look the record up again."""


class ClaimBusy(Exception):
    """The key's lock could not be had in time: answer that the request is in progress."""

    def __init__(self, *, retryable: bool = False) -> None:
        super().__init__()
        #: True when the attempt was rolled back whole (a deadlock victim) and may simply be tried again.
        self.retryable = retryable


class StoreUnavailable(Exception):
    """The store could not be reached or failed; fail closed."""
