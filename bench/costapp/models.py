"""A small ledger (accounts, rates, transfers) and the hand-written floor's key table.

The realistic create (``cost_views.TransferCreate``) locks the account, reads its currency's rate
and the account's last transfer, inserts a transfer and updates the balance. ``FloorKey`` is the
table the hand-written idempotency protocol (``cost_views.Floor``) keeps its keys in.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Account(models.Model):
    """Money held by one user in one currency."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cost_account"
    )
    currency = models.CharField(max_length=3)
    balance = models.BigIntegerField(default=0)
    last_transfer_at = models.DateTimeField(null=True)


class Rate(models.Model):
    """What a currency allows: the smallest transfer."""

    currency = models.CharField(max_length=3, unique=True)
    minimum = models.BigIntegerField()


class Transfer(models.Model):
    """Money moved into an account; ``sequence`` numbers an account's transfers from 1."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    sequence = models.PositiveIntegerField()
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=64)
    description = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["account", "sequence"], name="costapp_transfer_seq")]


class FloorKey(models.Model):
    """One key of the hand-written protocol: the claim, then the stored response."""

    scope = models.CharField(max_length=255)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.IntegerField(null=True)
    content_type = models.CharField(max_length=100, null=True)
    body = models.BinaryField(null=True)
    token = models.CharField(max_length=32, null=True)
    lease_expires_at = models.DateTimeField(null=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="costapp_floorkey_scope_key")
        ]
