"""Scope and key compare byte for byte: a binary, no-pad collation on MariaDB and MySQL.

Existing tables are converted in place. The old collation could only have kept rows apart that
the new one keeps apart too, so the conversion never meets a duplicate.
"""

from __future__ import annotations

from django.db import migrations

import django_idempotency.identity


class Migration(migrations.Migration):
    dependencies = [
        ("django_idempotency", "0002_admin_and_purge_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencykey",
            name="scope",
            field=django_idempotency.identity.ExactCharField(
                help_text="Who sent the key and to which operation: principal, method and route.",
                max_length=255,
                verbose_name="scope",
            ),
        ),
        migrations.AlterField(
            model_name="idempotencykey",
            name="key",
            field=django_idempotency.identity.ExactCharField(max_length=255, verbose_name="key"),
        ),
    ]
