"""The bench-only app of ``bench/cost.py``; never installed outside the benchmark."""

from __future__ import annotations

from django.apps import AppConfig


class CostAppConfig(AppConfig):
    name = "costapp"
    default_auto_field = "django.db.models.BigAutoField"
