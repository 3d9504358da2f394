from __future__ import annotations


class KeysOnOtherDatabase:
    """Route the key records to ``alias``; everything else stays on ``default``."""

    alias = "other"

    def db_for_read(self, model, **hints):
        return self.alias if model._meta.app_label == "django_idempotency" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        return None


class KeysOnUnreachableDatabase(KeysOnOtherDatabase):
    """Route the key records to the ``unreachable`` alias, a database that cannot be opened."""

    alias = "unreachable"
