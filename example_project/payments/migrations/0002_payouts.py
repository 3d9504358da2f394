"""Payouts through the payment provider, and the provider's webhook events."""

from __future__ import annotations

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Payout",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("amount", models.PositiveIntegerField(help_text="Amount in cents.")),
                ("currency", models.CharField(default="EUR", max_length=3)),
                (
                    "destination",
                    models.CharField(help_text="The receiving account (an IBAN).", max_length=34),
                ),
                ("description", models.CharField(blank=True, max_length=200)),
                ("provider_reference", models.CharField(max_length=64, unique=True)),
                (
                    "status",
                    models.CharField(
                        choices=[("sent", "Sent"), ("paid", "Paid"), ("failed", "Failed")],
                        default="sent",
                        max_length=10,
                    ),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="payouts",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created", "-pk"],
            },
        ),
        migrations.CreateModel(
            name="PayoutEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("payout.paid", "Paid"), ("payout.failed", "Failed")],
                        max_length=20,
                    ),
                ),
                ("received", models.DateTimeField(auto_now_add=True)),
                (
                    "payout",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="payments.payout",
                    ),
                ),
            ],
            options={
                "ordering": ["-received", "-pk"],
            },
        ),
    ]
