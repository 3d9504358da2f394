"""Admin for charges, refunds and payouts, next to the idempotency key records."""

from __future__ import annotations

from django.contrib import admin

from payments.models import Charge, Payout, PayoutEvent, Refund


class RefundInline(admin.TabularInline):
    """The refunds of a charge."""

    model = Refund
    extra = 0


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    """Charges, with their refunds inline."""

    list_display = ["id", "amount", "currency", "description", "owner", "created"]
    list_filter = ["currency"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    inlines = [RefundInline]


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    """Refunds."""

    list_display = ["id", "charge", "amount", "created"]
    list_select_related = ["charge"]
    raw_id_fields = ["charge"]


class PayoutEventInline(admin.TabularInline):
    """The provider's webhook events about a payout."""

    model = PayoutEvent
    extra = 0
    readonly_fields = ["kind", "received"]


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    """Payouts, with the provider's events inline."""

    list_display = ["id", "amount", "currency", "destination", "status", "owner", "created"]
    list_filter = ["status", "currency"]
    list_select_related = ["owner"]
    search_fields = ["provider_reference", "description"]
    raw_id_fields = ["owner"]
    inlines = [PayoutEventInline]
