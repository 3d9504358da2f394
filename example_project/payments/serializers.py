"""Serializers of the payments API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from payments.models import Charge, Refund


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
        if len(value) != 3 or not value.isalpha():
            raise serializers.ValidationError("Use a three-letter ISO 4217 code, e.g. EUR.")
        return value.upper()


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
