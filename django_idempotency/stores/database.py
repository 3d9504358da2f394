"""The database store: key records in ``IdempotencyKey``, claimed inside the view's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import Q, QuerySet

from django_idempotency.models import IdempotencyKey
from django_idempotency.stores.base import (
    COMPLETED,
    IN_PROGRESS,
    ClaimBusy,
    ClaimRequest,
    ClaimTaken,
    Lease,
    Record,
    StoredResponse,
    StoreUnavailable,
    next_fencing_token,
)
from django_idempotency.stores.locking import bounded_lock_wait, is_deadlock, is_lock_conflict
from django_idempotency.stores.lookup import compiled_lookup

UNREACHABLE = (OperationalError, InterfaceError)


class AtomicClaim:
    """A claim held inside an open transaction: it commits with the view's writes or not at all."""

    def __init__(self, using: str, pk: object) -> None:
        self.using = using
        self.pk = pk

    @property
    def rolled_back(self) -> bool:
        """Return whether something (the view, DRF's exception handler) marked the transaction for rollback."""
        return transaction.get_rollback(using=self.using)

    def complete(self, response: StoredResponse, *, now: datetime, expires_at: datetime) -> None:
        """Save the response on the claimed record, in the same transaction."""
        IdempotencyKey.objects.using(self.using).filter(pk=self.pk).update(
            **completed(response, now=now, expires_at=expires_at)
        )

    def release(self) -> None:
        """Roll back the claim together with everything the view wrote."""
        transaction.set_rollback(True, using=self.using)


class DatabaseStore:
    """Key records in the database that ``IdempotencyKey`` is routed to for writes."""

    def __init__(self, using: str | None = None) -> None:
        self.using = using or router.db_for_write(IdempotencyKey)

    def lookup(self, scope: str, key: str) -> Record | None:
        """Return the committed record for ``(scope, key)``, or ``None``; one indexed read, no lock.

        Raise ``ClaimBusy`` when the database refuses the read because a writer holds a lock.
        """
        try:
            row = compiled_lookup(self.using).find(self.using, scope, key)
        except UNREACHABLE as exc:
            # SQLite's shared-cache databases lock whole tables: a reader meets the writer.
            if is_lock_conflict(connections[self.using], exc):
                raise ClaimBusy from exc
            raise StoreUnavailable(str(exc)) from exc
        return None if row is None else to_record(row)

    @contextmanager
    def atomic_claim(
        self, claim: ClaimRequest, *, replace: Record | None, lock_timeout: float | None
    ) -> Iterator[AtomicClaim]:
        """Open a transaction, claim the key in it, and yield the claim for the view to run under.

        A new key is claimed by inserting its row: a concurrent duplicate's insert waits on the
        unique index until this transaction ends. An expired record is locked with
        ``select_for_update()`` and taken over. Raise ``ClaimTaken`` when another request holds or
        completed the key, ``ClaimBusy`` when its lock did not come within ``lock_timeout``.
        """
        connection = connections[self.using]
        outermost = not connection.in_atomic_block
        with ExitStack() as transaction_scope:
            try:
                # Even BEGIN can meet a lock: SQLite's BEGIN IMMEDIATE waits for other writers.
                transaction_scope.enter_context(transaction.atomic(using=self.using))
                with bounded_lock_wait(connection, lock_timeout):
                    pk = self._claim(claim, replace)
            except IntegrityError as exc:
                raise ClaimTaken from exc
            except UNREACHABLE as exc:
                if is_lock_conflict(connection, exc):
                    raise ClaimBusy(retryable=outermost and is_deadlock(connection, exc)) from exc
                raise StoreUnavailable(str(exc)) from exc
            yield AtomicClaim(self.using, pk)

    def claim_lease(
        self,
        claim: ClaimRequest,
        *,
        replace: Record | None,
        lease_expires_at: datetime,
        expires_at: datetime,
    ) -> Lease:
        """Commit an in-progress claim with a lease at once and return it (lease mode).

        A new key is inserted; a free record (``replace``) is taken over by one conditional
        ``UPDATE`` that matches its fencing token and checks it is still free, so of two
        requests racing for it exactly one wins. Raise ``ClaimTaken`` when another request holds
        or completed the key.
        """
        connection = connections[self.using]
        if connection.in_atomic_block:
            raise ImproperlyConfigured(
                f"Lease mode commits its claim before the view runs, but this request is already "
                f"inside a transaction on database {self.using!r} (ATOMIC_REQUESTS or an outer "
                f"atomic block). Mark the view @transaction.non_atomic_requests, or use "
                f"store='cache' (IDEMPOTENCY_STORE), or atomic mode."
            )
        token = next_fencing_token(replace.fencing_token if replace is not None else 0)
        fields: dict[str, object] = {
            "method": claim.method,
            "path": claim.path,
            "fingerprint": claim.fingerprint,
            "status": IN_PROGRESS,
            "created_at": claim.now,
            "lease_expires_at": lease_expires_at,
            "expires_at": expires_at,
            "fencing_token": token,
            "response_status": None,
            "response_headers": [],
            "response_body": None,
            "completed_at": None,
        }
        rows = IdempotencyKey.objects.using(self.using)
        try:
            if replace is None:
                # One INSERT in autocommit: it commits on its own, a duplicate fails on the index.
                pk = rows.create(scope=claim.scope, key=claim.key, **fields).pk
                return Lease(claim.scope, claim.key, token, pk)
            free = Q(status=COMPLETED, expires_at__lte=claim.now) | Q(
                status=IN_PROGRESS, lease_expires_at__lte=claim.now
            )
            taken = rows.filter(free, pk=replace.pk, fencing_token=replace.fencing_token).update(
                **fields
            )
        except IntegrityError as exc:
            raise ClaimTaken from exc
        except DatabaseError as exc:
            if is_lock_conflict(connection, exc):
                raise ClaimBusy from exc
            raise StoreUnavailable(str(exc)) from exc
        if not taken:
            raise ClaimTaken
        return Lease(claim.scope, claim.key, token, replace.pk)

    def complete(
        self, lease: Lease, response: StoredResponse, *, now: datetime, expires_at: datetime
    ) -> bool:
        """Store the response if ``lease`` still owns its key; return whether it did."""
        return self._write(lease, **completed(response, now=now, expires_at=expires_at))

    def release(self, lease: Lease) -> bool:
        """Delete the claim if ``lease`` still owns its key; return whether it did."""
        try:
            deleted, _per_model = self._owned(lease).delete()
        except DatabaseError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return deleted > 0

    def renew(self, lease: Lease, *, lease_expires_at: datetime) -> bool:
        """Move the claim's lease to ``lease_expires_at`` if ``lease`` still owns its key."""
        return self._write(lease, lease_expires_at=lease_expires_at)

    def _owned(self, lease: Lease) -> QuerySet[IdempotencyKey]:
        owned: QuerySet[IdempotencyKey] = IdempotencyKey.objects.using(self.using).filter(
            pk=lease.pk, fencing_token=lease.token, status=IN_PROGRESS
        )
        return owned

    def _write(self, lease: Lease, **fields: object) -> bool:
        try:
            return self._owned(lease).update(**fields) > 0
        except DatabaseError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _claim(self, claim: ClaimRequest, replace: Record | None) -> object:
        rows = IdempotencyKey.objects.using(self.using)
        fields = {
            "method": claim.method,
            "path": claim.path,
            "fingerprint": claim.fingerprint,
            "status": IN_PROGRESS,
            "created_at": claim.now,
        }
        if replace is None:
            return rows.create(scope=claim.scope, key=claim.key, **fields).pk
        row = rows.select_for_update().filter(pk=replace.pk).first()
        if row is None or not to_record(row).is_free(claim.now):
            raise ClaimTaken
        cleared: dict[str, object] = {
            "response_status": None,
            "response_headers": [],
            "response_body": None,
            "completed_at": None,
            "expires_at": None,
            "lease_expires_at": None,
        }
        for name, value in {**fields, **cleared}.items():
            setattr(row, name, value)
        row.save(update_fields=[*fields, *cleared])
        return row.pk


def completed(response: StoredResponse, *, now: datetime, expires_at: datetime) -> dict[str, Any]:
    """Return the column values of a record that holds ``response``, kept until ``expires_at``."""
    return {
        "status": COMPLETED,
        "response_status": response.status,
        "response_headers": [list(pair) for pair in response.headers],
        "response_body": response.body,
        "completed_at": now,
        "expires_at": expires_at,
        "lease_expires_at": None,
    }


def to_record(row: IdempotencyKey) -> Record:
    """Return the store-neutral snapshot of a key row.

    A completed row whose stored headers cannot be read keeps no replayable body: its duplicates
    are told the request was already processed rather than having it run again.
    """
    response = None
    if row.status == COMPLETED and row.response_status is not None:
        body = None if row.response_body is None else bytes(row.response_body)
        try:
            headers = tuple((str(name), str(value)) for name, value in row.response_headers)
        except (TypeError, ValueError):
            headers, body = (), None
        response = StoredResponse(row.response_status, headers, body)
    return Record(
        pk=row.pk,
        fingerprint=row.fingerprint,
        status=row.status,
        response=response,
        expires_at=row.expires_at,
        lease_expires_at=row.lease_expires_at,
        fencing_token=row.fencing_token,
    )
