"""The app's configuration."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import Tags, register
from django.utils.translation import gettext_lazy as _

#: The tag every check of this app carries: ``manage.py check --tag idempotency``.
CHECK_TAG = "idempotency"


class IdempotencyConfig(AppConfig):
    """Registers django_idempotency."""

    name = "django_idempotency"
    label = "django_idempotency"
    verbose_name = _("Idempotency")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks."""
        from django_idempotency import checks

        register(checks.check_settings, CHECK_TAG)
        # Reads only the database settings, so it runs with every `check` (Django 6.1 runs
        # checks tagged "database" only with `check --database`).
        register(checks.check_database, CHECK_TAG)
        register(checks.check_cache, CHECK_TAG, Tags.caches)
        register(checks.check_redis_eviction, CHECK_TAG, Tags.caches, Tags.database)
        register(checks.check_identity, CHECK_TAG, Tags.database)
