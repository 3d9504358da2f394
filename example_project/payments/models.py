"""Charges and their refunds; amounts are integers in the currency's minor unit (cents)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Charge(models.Model):
    """Money taken from the owner; creating one twice is the bug idempotency keys prevent."""

    amount = models.PositiveIntegerField(help_text="Amount in cents.")
    currency = models.CharField(max_length=3, default="EUR")
    description = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="charges"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        """Return e.g. ``12.50 EUR``."""
        return f"{self.amount / 100:.2f} {self.currency}"

    def refundable(self) -> int:
        """Return the amount, in cents, not refunded yet."""
        refunded = self.refunds.aggregate(total=models.Sum("amount"))["total"] or 0
        return self.amount - refunded


class Refund(models.Model):
    """Money given back on a charge; never more in total than the charge."""

    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="refunds")
    amount = models.PositiveIntegerField(help_text="Amount in cents.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        """Return e.g. ``5.00 EUR refund``."""
        return f"{self.amount / 100:.2f} {self.charge.currency} refund"


class Payout(models.Model):
    """Money sent to the owner's bank account through the (fake) payment provider."""

    SENT = "sent"
    PAID = "paid"
    FAILED = "failed"
    STATUSES = [(SENT, "Sent"), (PAID, "Paid"), (FAILED, "Failed")]

    amount = models.PositiveIntegerField(help_text="Amount in cents.")
    currency = models.CharField(max_length=3, default="EUR")
    destination = models.CharField(max_length=34, help_text="The receiving account (an IBAN).")
    description = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="payouts"
    )
    provider_reference = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=10, choices=STATUSES, default=SENT)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        """Return e.g. ``12.50 EUR payout``."""
        return f"{self.amount / 100:.2f} {self.currency} payout"


class PayoutEvent(models.Model):
    """A webhook delivery from the provider about a payout; one row per event, however often sent."""

    KINDS = [("payout.paid", "Paid"), ("payout.failed", "Failed")]

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=KINDS)
    received = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received", "-pk"]

    def __str__(self) -> str:
        """Return e.g. ``payout.paid``."""
        return self.kind
