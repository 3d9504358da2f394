"""Fixtures of the contract suite: every lease store, every store and mode pair, a fake clock."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import pytest
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone

from django_idempotency.models import IdempotencyKey
from django_idempotency.stores.cache import CacheStore
from django_idempotency.stores.database import DatabaseStore
from tests.helpers import signed_in_user

#: The django-redis alias of tests/settings.py (present when REDIS_URL is set).
REDIS_ALIAS = "redis"
#: The cache alias each cache-store parameter runs on: django-redis, and Django's own backend.
CACHE_ALIASES = {"cache": REDIS_ALIAS, "cache-builtin": "redis-builtin"}


class Clock:
    """A clock the test moves by hand; ``IDEMPOTENCY_CLOCK`` accepts it as a callable."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        with self._lock:
            self.now += timedelta(seconds=seconds)
            return self.now


@pytest.fixture
def clock() -> Clock:
    # Whole seconds: the cache store keeps milliseconds, the database microseconds.
    return Clock(timezone.now().replace(microsecond=0))


@pytest.fixture
def cache_prefix():
    """Give the test its own cache-store prefix and delete its Redis keys afterwards."""
    prefix = f"contract-{uuid.uuid4().hex}"
    yield prefix
    for alias in CACHE_ALIASES.values():
        client = CacheStore(alias).client
        for name in client.scan_iter(match=caches[alias].make_key(f"{prefix}:*")):
            client.delete(name)


class Records:
    """Every key record the test's store holds, as raw comparable snapshots."""

    def __init__(self, store: str, prefix: str | None) -> None:
        self.store = store
        self.prefix = prefix
        self.alias = CACHE_ALIASES.get(store, REDIS_ALIAS)

    def snapshot(self) -> dict[object, object]:
        """Return each record's full stored state, keyed by its identity in the store."""
        if self.store == "database":
            return {row["id"]: row for row in IdempotencyKey.objects.values().order_by("pk")}
        client = CacheStore(self.alias).client
        pattern = caches[self.alias].make_key(f"{self.prefix}:*")
        return {name: client.get(name) for name in client.scan_iter(match=pattern)}

    def count(self) -> int:
        """Return how many records the store holds."""
        return len(self.snapshot())


# The lease stores under contract; the cache store runs against the real Redis.
LEASE_STORES = [
    pytest.param("database", id="database"),
    pytest.param("cache", id="cache", marks=pytest.mark.redis),
    pytest.param("cache-builtin", id="cache-builtin", marks=pytest.mark.redis),
]


@pytest.fixture(params=LEASE_STORES)
def lease_store(request, transactional_db):
    """Return each lease store in turn, with nothing in it.

    A lease-mode claim commits at once, so these tests run outside any test transaction.
    """
    if request.param == "database":
        yield DatabaseStore()
        return
    prefix = request.getfixturevalue("cache_prefix")
    yield CacheStore(CACHE_ALIASES[request.param], prefix=prefix)


# Every store and mode pair that is meant to work, as (store, mode).
COMBINATIONS = [
    pytest.param(("database", "atomic"), id="database-atomic"),
    pytest.param(("database", "lease"), id="database-lease"),
    pytest.param(("cache", "lease"), id="cache-lease", marks=pytest.mark.redis),
    pytest.param(("cache-builtin", "lease"), id="cache-builtin-lease", marks=pytest.mark.redis),
]
LEASE_COMBINATIONS = COMBINATIONS[1:]


@pytest.fixture
def configured(request, transactional_db, clock):
    """Apply the test's (store, mode) pair and the fake clock; yield the pair's records view."""
    store, mode = request.param
    cache = store in CACHE_ALIASES
    prefix = request.getfixturevalue("cache_prefix") if cache else None
    settings = {
        "IDEMPOTENCY_STORE": "cache" if cache else store,
        "IDEMPOTENCY_MODE": mode,
        "IDEMPOTENCY_CLOCK": clock,
        "IDEMPOTENCY_CACHE_ALIAS": CACHE_ALIASES.get(store, REDIS_ALIAS),
        "IDEMPOTENCY_CACHE_KEY_PREFIX": prefix or "unused",
    }
    # Requests authenticate as the tester, some from many threads at once: create it first.
    signed_in_user()
    with override_settings(**settings):
        yield Records(store, prefix)
