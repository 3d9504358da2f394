"""Serializers of the payments API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from payments.models import Charge, Payout, Refund
from payments.provider import SIMULATIONS


def currency_code(value: str) -> str:
    """Return ``value`` as a three-letter upper-case currency code, or raise a validation error."""
    if len(value) != 3 or not value.isalpha():
        raise serializers.ValidationError("Use a three-letter ISO 4217 code, e.g. EUR.")
    return value.upper()


class ChargeSerializer(serializers.ModelSerializer):
    """A charge; the owner is the requesting user."""

    owner = serializers.ReadOnlyField(source="owner.username")

    class Meta:
        model = Charge
        fields = ["id", "amount", "currency", "description", "owner", "created"]
        read_only_fields = ["created"]
        extra_kwargs = {"amount": {"min_value": 1}}

    def validate_currency(self, value: str) -> str:
        """Return the currency as three upper-case letters."""
        return currency_code(value)


class OwnChargeField(serializers.PrimaryKeyRelatedField):
    """A charge of the requesting user; other users' charges do not exist for them."""

    def get_queryset(self) -> Any:
        """Return the requesting user's charges, locking the one looked up until the refund is saved."""
        return Charge.objects.select_for_update().filter(owner=self.context["request"].user)


class RefundSerializer(serializers.ModelSerializer):
    """A refund of part or all of one of the user's charges."""

    charge = OwnChargeField()

    class Meta:
        model = Refund
        fields = ["id", "charge", "amount", "created"]
        read_only_fields = ["created"]
        extra_kwargs = {"amount": {"min_value": 1}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Return ``attrs`` when the refund fits in what is left of the charge."""
        refundable = attrs["charge"].refundable()
        if attrs["amount"] > refundable:
            raise serializers.ValidationError(
                {"amount": f"At most {refundable} cents of this charge can still be refunded."}
            )
        return attrs


class PayoutSerializer(serializers.ModelSerializer):
    """A payout to a bank account; ``simulate`` lets a demo make the provider slow or flaky."""

    simulate = serializers.ChoiceField(
        choices=SIMULATIONS,
        required=False,
        write_only=True,
        help_text="Demo only (DEBUG): 'slow' makes the provider take seconds, "
        "'fail_first' makes its first attempt for this key fail.",
    )
    events = serializers.SerializerMethodField()

    class Meta:
        model = Payout
        fields = [
            "id",
            "amount",
            "currency",
            "destination",
            "description",
            "provider_reference",
            "status",
            "events",
            "created",
            "simulate",
        ]
        read_only_fields = ["provider_reference", "status", "created"]
        extra_kwargs = {"amount": {"min_value": 1}}

    def validate_currency(self, value: str) -> str:
        """Return the currency as three upper-case letters."""
        return currency_code(value)

    def validate_simulate(self, value: str) -> str:
        """Return ``value`` when the project allows demo controls."""
        if value and not settings.PAYMENTS_DEMO_CONTROLS:
            raise serializers.ValidationError("Simulations are available only in DEBUG mode.")
        return value

    def get_events(self, payout: Payout) -> list[str]:
        """Return the kinds of the webhook events received for the payout, oldest first."""
        return [event.kind for event in reversed(payout.events.all())]
