"""The database store: key records in ``IdempotencyKey``, claimed inside the view's transaction."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DatabaseError,
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
    IdentityFolded,
    Lease,
    Record,
    StoredResponse,
    StoreUnavailable,
    next_fencing_token,
)
from django_idempotency.stores.locking import (
    bounded_lock_wait,
    is_database_lock,
    is_deadlock,
    is_lock_conflict,
)
from django_idempotency.stores.lookup import compiled_lookup
from django_idempotency.stores.statements import claim_values, insert_claim, take_over
from django_idempotency.stores.statements import complete as write_completion

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

    def complete(self, response: StoredResponse, *, now: datetime, expires_at: datetime) -> bool:
        """Save the response on the claimed record, in the same transaction; return whether it was there.

        ``False`` means the claim vanished under the view: a statement that commits implicitly
        (DDL on MariaDB and MySQL) committed it early, and then something deleted it.
        """
        return write_completion(
            self.using, self.pk, completed(response, now=now, expires_at=expires_at)
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

        Raise ``ClaimBusy`` when the database refuses the read because a writer holds a lock (or,
        at SERIALIZABLE, for a serialization failure), and
        ``IdentityFolded`` when the row it found names another scope or key: the table compares
        inexactly (a case- or space-insensitive collation), and no answer from it can be trusted.
        """
        try:
            row = compiled_lookup(self.using).find(self.using, scope, key)
        except UNREACHABLE as exc:
            # SQLite's shared-cache databases lock whole tables: a reader meets the writer.
            connection = connections[self.using]
            if is_lock_conflict(connection, exc):
                raise ClaimBusy(database_locked=is_database_lock(connection, exc)) from exc
            raise StoreUnavailable(str(exc)) from exc
        if row is None:
            return None
        if row["scope"] != scope or row["key"] != key:
            raise IdentityFolded(self.using)
        return to_record(row)

    @contextmanager
    def atomic_claim(
        self, claim: ClaimRequest, *, replace: Record | None, lock_timeout: float | None
    ) -> Iterator[AtomicClaim]:
        """Open a transaction, claim the key in it, and yield the claim for the view to run under.

        A new key is claimed by inserting its row: a concurrent duplicate's insert waits on the
        unique index until this transaction ends, then finds the key taken. An expired record is
        taken over by one conditional ``UPDATE``. Raise ``ClaimTaken`` when another request holds
        or completed the key, ``ClaimBusy`` when its lock did not come within ``lock_timeout``.
        """
        connection = connections[self.using]
        outermost = not connection.in_atomic_block
        with ExitStack() as transaction_scope:
            try:
                # Even BEGIN can meet a lock: SQLite's BEGIN IMMEDIATE waits for other writers.
                transaction_scope.enter_context(transaction.atomic(using=self.using))
                pk = self._claim(claim, replace, lock_timeout)
            except UNREACHABLE as exc:
                if is_lock_conflict(connection, exc):
                    raise ClaimBusy(
                        retryable=outermost and is_deadlock(connection, exc),
                        database_locked=is_database_lock(connection, exc),
                    ) from exc
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
                # One INSERT in autocommit: it commits on its own, a duplicate finds the key taken.
                pk = insert_claim(
                    self.using,
                    claim_values(scope=claim.scope, key=claim.key, **fields),
                    lock_timeout=None,
                )
                if pk is None:
                    raise ClaimTaken
                return Lease(claim.scope, claim.key, token, pk)
            free = Q(status=COMPLETED, expires_at__lte=claim.now) | Q(
                status=IN_PROGRESS, lease_expires_at__lte=claim.now
            )
            taken = rows.filter(free, pk=replace.pk, fencing_token=replace.fencing_token).update(
                **fields
            )
        except DatabaseError as exc:
            if is_lock_conflict(connection, exc):
                raise ClaimBusy(database_locked=is_database_lock(connection, exc)) from exc
            raise StoreUnavailable(str(exc)) from exc
        if not taken:
            raise ClaimTaken
        return Lease(claim.scope, claim.key, token, replace.pk)

    def complete(
        self, lease: Lease, response: StoredResponse, *, now: datetime, expires_at: datetime
    ) -> bool:
        """Store the response if ``lease`` still owns its key; return whether it did."""
        values = completed(response, now=now, expires_at=expires_at)
        try:
            return write_completion(self.using, lease.pk, values, token=lease.token)
        except DatabaseError as exc:
            raise StoreUnavailable(str(exc)) from exc

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

    def _claim(
        self, claim: ClaimRequest, replace: Record | None, lock_timeout: float | None
    ) -> object:
        # An in-progress record always carries an expiry: should a statement in the view commit
        # the claim early (DDL on MariaDB and MySQL), the key frees itself and is purged in time.
        values = claim_values(
            scope=claim.scope,
            key=claim.key,
            method=claim.method,
            path=claim.path,
            fingerprint=claim.fingerprint,
            status=IN_PROGRESS,
            created_at=claim.now,
            expires_at=claim.now + claim.ttl,
        )
        if replace is None:
            pk = insert_claim(self.using, values, lock_timeout=lock_timeout)
            if pk is None:
                raise ClaimTaken
            return pk
        with bounded_lock_wait(connections[self.using], lock_timeout):
            taken = take_over(
                self.using, replace.pk, values, now=claim.now, lock_timeout=lock_timeout
            )
        if not taken:
            raise ClaimTaken
        return replace.pk


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


def to_record(row: Mapping[str, Any]) -> Record:
    """Return the store-neutral snapshot of a key row, given its field values by name.

    A completed row whose stored headers cannot be read keeps no replayable body: its duplicates
    are told the request was already processed rather than having it run again.
    """
    response = None
    status = row["status"]
    if status == COMPLETED and row["response_status"] is not None:
        body = row["response_body"]
        body = None if body is None else bytes(body)
        try:
            headers = tuple((str(name), str(value)) for name, value in row["response_headers"])
        except (TypeError, ValueError):
            headers, body = (), None
        response = StoredResponse(row["response_status"], headers, body)
    return Record(
        pk=row["id"],
        fingerprint=row["fingerprint"],
        status=status,
        response=response,
        expires_at=row["expires_at"],
        lease_expires_at=row["lease_expires_at"],
        fencing_token=row["fencing_token"],
    )
