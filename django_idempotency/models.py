"""The key record: one row per (scope, key), holding the claim and the stored response."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import models, router, transaction
from django.utils.translation import gettext_lazy as _

from django_idempotency.conf import (
    FINGERPRINT_COLUMN_LENGTH,
    KEY_COLUMN_LENGTH,
    SCOPE_COLUMN_LENGTH,
    conf,
)
from django_idempotency.identity import ExactCharField


class IdempotencyKeyQuerySet(models.QuerySet["IdempotencyKey"]):
    """Queries over key records."""

    def expired(self, now: datetime) -> IdempotencyKeyQuerySet:
        """Return the records that may be deleted at ``now``.

        That is every record whose retention ended at or before ``now`` and that holds no live
        lease: completed records past their TTL, and lease-mode claims abandoned long enough for
        their retention to end too. A live claim or a record still being replayed is never in it.
        """
        expired: IdempotencyKeyQuerySet = self.filter(expires_at__lte=now).filter(
            models.Q(lease_expires_at__isnull=True) | models.Q(lease_expires_at__lte=now)
        )
        return expired

    def purge_expired(
        self,
        *,
        now: datetime | None = None,
        batch_size: int | None = None,
        dry_run: bool = False,
        on_batch: Callable[[int], object] | None = None,
    ) -> int:
        """Delete the :meth:`expired` records in batches; return how many were deleted.

        Each batch of at most ``batch_size`` primary keys (default
        ``IDEMPOTENCY_PURGE_BATCH_SIZE``) is deleted in its own short transaction, which locks
        the batch's records that are still expired (skipping any a request holds) and deletes
        only those, so a key claimed anew is never deleted, whatever delete receivers are
        connected. Receivers get each deleted record, as with ``QuerySet.delete()``.
        ``on_batch`` is called with each batch's count. With
        ``dry_run`` nothing is deleted and the number of records due is returned. The
        queryset's database (``.using(...)``) is honoured; by default the model's write alias.
        """
        size = conf.PURGE_BATCH_SIZE if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be a positive number of records, not {size!r}.")
        using = self.db if self._db else router.db_for_write(self.model)  # type: ignore[attr-defined]
        due = self.using(using).expired(conf.CLOCK() if now is None else now)
        if dry_run:
            return int(due.count())
        # MariaDB 10.5 cannot skip locked rows; the batch then waits for them instead.
        skip_locked = transaction.get_connection(using).features.has_select_for_update_skip_locked
        total = 0
        last_pk: object = None
        while True:
            batch = due.order_by("pk")
            if last_pk is not None:
                batch = batch.filter(pk__gt=last_pk)
            pks = list(batch.values_list("pk", flat=True)[:size])
            if not pks:
                return total
            with transaction.atomic(using=using):
                # With a delete receiver connected, Django loads the rows and deletes them by
                # primary key without the expiry condition, so they must not change in between.
                locked = list(
                    due.filter(pk__in=pks)
                    .order_by("pk")
                    .select_for_update(skip_locked=skip_locked)
                    .values_list("pk", flat=True)
                )
                deleted, _per_model = due.filter(pk__in=locked).delete()
            total += deleted
            last_pk = pks[-1]
            if on_batch is not None:
                on_batch(deleted)


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` within a scope, and what its first request produced."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", _("in progress")
        COMPLETED = "completed", _("completed")

    scope = ExactCharField(
        _("scope"),
        max_length=SCOPE_COLUMN_LENGTH,
        help_text=_("Who sent the key and to which operation: principal, method and route."),
    )
    key = ExactCharField(_("key"), max_length=KEY_COLUMN_LENGTH)
    method = models.CharField(_("method"), max_length=16)
    path = models.TextField(
        _("path"), help_text=_("The full path of the first request, query string included.")
    )
    fingerprint = models.CharField(
        _("fingerprint"),
        max_length=FINGERPRINT_COLUMN_LENGTH,
        blank=True,
        help_text=_("SHA-256 of the first request's payload; empty when fingerprints are off."),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.IN_PROGRESS
    )
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_headers = models.JSONField(_("response headers"), default=list, blank=True)
    response_body = models.BinaryField(
        _("response body"),
        null=True,
        blank=True,
        help_text=_("Empty (NULL) when the response was not kept for replay."),
    )
    created_at = models.DateTimeField(_("created"))
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        _("lease expires"),
        null=True,
        blank=True,
        help_text=_("Lease mode: when an unfinished claim may be taken over."),
    )
    fencing_token = models.PositiveBigIntegerField(
        _("fencing token"),
        default=0,
        help_text=_("Lease mode: grows with every claim, so a stale owner cannot complete."),
    )

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("scope", "key"), name="django_idempotency_scope_key_uniq"
            ),
        ]
        # One index behind each admin filter and the purge; each list filter also sorts by
        # -created_at, so those indexes carry it and a filtered page reads only its own rows.
        indexes = [
            models.Index(fields=("expires_at",), name="django_idem_expires_idx"),
            models.Index(fields=("created_at",), name="django_idem_created_idx"),
            models.Index(fields=("status", "created_at"), name="django_idem_status_idx"),
            models.Index(fields=("method", "created_at"), name="django_idem_method_idx"),
            models.Index(fields=("response_status", "created_at"), name="django_idem_resp_idx"),
            models.Index(fields=("key",), name="django_idem_key_idx"),
            # The admin searches scopes by prefix (LIKE 'x%'); PostgreSQL uses a B-tree for that
            # only with the pattern operator class. Other databases get a plain index.
            models.Index(
                fields=["scope"], opclasses=["varchar_pattern_ops"], name="django_idem_scope_idx"
            ),
        ]

    def __str__(self) -> str:
        return str(self.key)
