"""Indexes behind every admin filter, the changelist ordering, and the key and scope searches."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_idempotency", "0001_initial"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(fields=["created_at"], name="django_idem_created_idx"),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(fields=["status", "created_at"], name="django_idem_status_idx"),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(fields=["method", "created_at"], name="django_idem_method_idx"),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(
                fields=["response_status", "created_at"], name="django_idem_resp_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(fields=["key"], name="django_idem_key_idx"),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(
                fields=["scope"], name="django_idem_scope_idx", opclasses=["varchar_pattern_ops"]
            ),
        ),
    ]
