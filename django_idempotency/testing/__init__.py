"""Test helpers for projects: prove an endpoint runs once per key, and make key records in any state.

Usable from pytest and from Django's ``TestCase``; see the "Test helpers" docs page.
"""

from __future__ import annotations

from django_idempotency.testing.assertions import IdempotencyCheck, assert_idempotent
from django_idempotency.testing.records import (
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    STALE_LEASE,
    STATES,
    fingerprint_for,
    make_key_record,
    scope_for,
)

__all__ = [
    "COMPLETED",
    "EXPIRED",
    "IN_PROGRESS",
    "STALE_LEASE",
    "STATES",
    "IdempotencyCheck",
    "assert_idempotent",
    "fingerprint_for",
    "make_key_record",
    "scope_for",
]
