"""System checks: settings the app cannot work with, and infrastructure that weakens its guarantee.

``catalogue`` holds every check ID with its message and hint, ``values`` checks the values of the
``IDEMPOTENCY_*`` settings and ``infrastructure`` the database, cache and Redis behind them.
``IdempotencyConfig.ready()`` registers the five check functions exported here.
"""

from __future__ import annotations

from django_idempotency.checks.catalogue import CATALOGUE, message
from django_idempotency.checks.infrastructure import (
    check_cache,
    check_database,
    check_identity,
    check_redis_eviction,
)
from django_idempotency.checks.values import check_settings, known_settings, raw

__all__ = [
    "CATALOGUE",
    "check_cache",
    "check_database",
    "check_identity",
    "check_redis_eviction",
    "check_settings",
    "known_settings",
    "message",
    "raw",
]
