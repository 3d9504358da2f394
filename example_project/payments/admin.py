"""Admin for charges and refunds, next to the idempotency key records."""

from __future__ import annotations

from django.contrib import admin

from payments.models import Charge, Refund


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
