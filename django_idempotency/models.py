"""The key record: one row per (scope, key), holding the claim and the stored response."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _

from django_idempotency.conf import (
    FINGERPRINT_COLUMN_LENGTH,
    KEY_COLUMN_LENGTH,
    SCOPE_COLUMN_LENGTH,
)


class IdempotencyKeyQuerySet(models.QuerySet["IdempotencyKey"]):
    """Queries over key records."""

    def expired(self, now: datetime) -> IdempotencyKeyQuerySet:
        """Return the completed records whose retention ended at or before ``now``."""
        expired: IdempotencyKeyQuerySet = self.filter(expires_at__lte=now)
        return expired


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` within a scope, and what its first request produced."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", _("in progress")
        COMPLETED = "completed", _("completed")

    scope = models.CharField(
        _("scope"),
        max_length=SCOPE_COLUMN_LENGTH,
        help_text=_("Who sent the key and to which operation: principal, method and route."),
    )
    key = models.CharField(_("key"), max_length=KEY_COLUMN_LENGTH)
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
        indexes = [
            models.Index(fields=("expires_at",), name="django_idem_expires_idx"),
        ]

    def __str__(self) -> str:
        return self.key
