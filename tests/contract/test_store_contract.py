"""The lease-store contract: what lease mode relies on, proven on every store against real services.

``DatabaseStore`` runs on the test database (SQLite, PostgreSQL or MariaDB), ``CacheStore`` on the
real Redis of ``REDIS_URL``. Times come from a fake clock; nothing sleeps.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timedelta

import pytest
from django.core.cache import caches
from django.db import connections
from django.test import override_settings

from django_idempotency.stores.base import (
    COMPLETED,
    IN_PROGRESS,
    ClaimRequest,
    ClaimTaken,
    Lease,
    StoredResponse,
)
from django_idempotency.stores.cache import FORMAT_VERSION, CacheStore
from tests.contract.conftest import CACHE_ALIASES

LEASE = timedelta(seconds=30)
TTL = timedelta(hours=1)
SCOPE = "user:1 POST api/charges/"
FINGERPRINT = "f" * 64
RESPONSE = StoredResponse(
    status=201,
    headers=(("Content-Type", "application/json"), ("Location", "/charges/7/")),
    body=b'{"id": 7}\x00\xff\xfe binary tail',
)
THREADS = 20
THREAD_TIMEOUT = 15.0


def claim_at(now, *, key="key-1", scope=SCOPE, fingerprint=FINGERPRINT) -> ClaimRequest:
    return ClaimRequest(
        scope=scope, key=key, method="POST", path="/api/charges/", fingerprint=fingerprint, now=now
    )


def take(store, claim: ClaimRequest, replace=None, *, lease=LEASE, ttl=TTL) -> Lease:
    return store.claim_lease(
        claim, replace=replace, lease_expires_at=claim.now + lease, expires_at=claim.now + ttl
    )


def test_an_unknown_key_has_no_record(lease_store):
    assert lease_store.lookup(SCOPE, "never-used") is None


def test_a_new_key_is_claimed_in_progress_with_its_lease(lease_store, clock):
    now = clock()
    lease = take(lease_store, claim_at(now))

    record = lease_store.lookup(SCOPE, "key-1")
    assert (lease.scope, lease.key) == (SCOPE, "key-1")
    assert record.status == IN_PROGRESS
    assert record.fingerprint == FINGERPRINT
    assert record.response is None
    assert record.fencing_token == lease.token
    assert record.lease_expires_at == now + LEASE
    assert record.expires_at == now + TTL
    assert not record.is_free(now + LEASE - timedelta(milliseconds=1))
    assert record.is_free(now + LEASE)


def test_a_held_key_cannot_be_claimed_again(lease_store, clock):
    lease = take(lease_store, claim_at(clock()))

    with pytest.raises(ClaimTaken):
        take(lease_store, claim_at(clock.advance(1)))
    with pytest.raises(ClaimTaken):
        take(lease_store, claim_at(clock(), fingerprint="other"))
    assert lease_store.lookup(SCOPE, "key-1").fencing_token == lease.token


def test_a_live_lease_is_not_taken_over(lease_store, clock):
    start = clock()
    lease = take(lease_store, claim_at(start))
    record = lease_store.lookup(SCOPE, "key-1")

    with pytest.raises(ClaimTaken):
        take(lease_store, claim_at(start + LEASE - timedelta(seconds=1)), replace=record)
    assert lease_store.lookup(SCOPE, "key-1").fencing_token == lease.token


def test_an_expired_lease_is_taken_over_with_a_larger_token(lease_store, clock):
    first = take(lease_store, claim_at(clock()))
    abandoned = lease_store.lookup(SCOPE, "key-1")

    later = clock.advance(LEASE.total_seconds())
    second = take(lease_store, claim_at(later, fingerprint="retry"), replace=abandoned)

    record = lease_store.lookup(SCOPE, "key-1")
    assert second.token > first.token
    assert record.fencing_token == second.token
    assert record.status == IN_PROGRESS
    assert record.fingerprint == "retry"
    assert record.lease_expires_at == later + LEASE


def test_a_stale_owner_cannot_complete_release_or_renew(lease_store, clock):
    stale = take(lease_store, claim_at(clock()))
    abandoned = lease_store.lookup(SCOPE, "key-1")
    later = clock.advance(LEASE.total_seconds() + 1)
    owner = take(lease_store, claim_at(later), replace=abandoned)
    before = lease_store.lookup(SCOPE, "key-1")

    assert not lease_store.complete(stale, RESPONSE, now=later, expires_at=later + TTL)
    assert not lease_store.renew(stale, lease_expires_at=later + 10 * LEASE)
    assert not lease_store.release(stale)
    assert lease_store.lookup(SCOPE, "key-1") == before

    assert lease_store.complete(owner, RESPONSE, now=later, expires_at=later + TTL)
    record = lease_store.lookup(SCOPE, "key-1")
    assert record.status == COMPLETED
    assert record.fencing_token == owner.token
    assert not lease_store.complete(stale, RESPONSE, now=later, expires_at=later + TTL)
    assert not lease_store.release(stale)
    assert lease_store.lookup(SCOPE, "key-1") == record


def test_a_takeover_needs_the_record_it_saw(lease_store, clock):
    take(lease_store, claim_at(clock()))
    seen = lease_store.lookup(SCOPE, "key-1")
    later = clock.advance(LEASE.total_seconds())
    winner = take(lease_store, claim_at(later), replace=seen)

    # Another request that saw the same abandoned claim finds it already replaced.
    with pytest.raises(ClaimTaken):
        take(lease_store, claim_at(later), replace=seen)
    assert lease_store.lookup(SCOPE, "key-1").fencing_token == winner.token


def test_complete_keeps_the_response_byte_for_byte(lease_store, clock):
    lease = take(lease_store, claim_at(clock()))
    done = clock.advance(5)

    assert lease_store.complete(lease, RESPONSE, now=done, expires_at=done + TTL)

    record = lease_store.lookup(SCOPE, "key-1")
    assert record.status == COMPLETED
    assert record.response == RESPONSE
    assert record.response.header("location") == "/charges/7/"
    assert record.fingerprint == FINGERPRINT
    assert record.expires_at == done + TTL
    assert not record.is_free(done + TTL - timedelta(milliseconds=1))
    assert record.is_free(done + TTL)


def test_a_response_without_a_kept_body_is_stored_as_such(lease_store, clock):
    lease = take(lease_store, claim_at(clock()))
    secret = StoredResponse(201, (("Location", "/charges/7/"),), None)

    assert lease_store.complete(lease, secret, now=clock(), expires_at=clock() + TTL)

    assert lease_store.lookup(SCOPE, "key-1").response == secret


def test_a_completed_record_is_final_for_its_owner(lease_store, clock):
    lease = take(lease_store, claim_at(clock()))
    assert lease_store.complete(lease, RESPONSE, now=clock(), expires_at=clock() + TTL)
    record = lease_store.lookup(SCOPE, "key-1")

    other = StoredResponse(200, (), b"second")
    assert not lease_store.complete(lease, other, now=clock(), expires_at=clock() + TTL)
    assert not lease_store.renew(lease, lease_expires_at=clock() + LEASE)
    assert not lease_store.release(lease)
    assert lease_store.lookup(SCOPE, "key-1") == record


def test_a_completed_record_is_claimable_only_once_expired(lease_store, clock):
    lease = take(lease_store, claim_at(clock()))
    done = clock()
    lease_store.complete(lease, RESPONSE, now=done, expires_at=done + TTL)
    completed = lease_store.lookup(SCOPE, "key-1")

    with pytest.raises(ClaimTaken):
        take(lease_store, claim_at(done + TTL - timedelta(seconds=1)), replace=completed)
    fresh = take(lease_store, claim_at(done + TTL, fingerprint="new"), replace=completed)

    record = lease_store.lookup(SCOPE, "key-1")
    assert record.status == IN_PROGRESS
    assert record.response is None
    assert record.fingerprint == "new"
    assert record.fencing_token == fresh.token > lease.token


def test_release_frees_the_key_once(lease_store, clock):
    lease = take(lease_store, claim_at(clock()))

    assert lease_store.release(lease)
    assert lease_store.lookup(SCOPE, "key-1") is None
    assert not lease_store.release(lease)

    again = take(lease_store, claim_at(clock()))
    assert again.token != lease.token
    assert not lease_store.complete(lease, RESPONSE, now=clock(), expires_at=clock() + TTL)
    assert lease_store.lookup(SCOPE, "key-1").fencing_token == again.token


def test_renew_moves_the_lease_end(lease_store, clock):
    start = clock()
    lease = take(lease_store, claim_at(start))

    assert lease_store.renew(lease, lease_expires_at=start + 3 * LEASE)

    record = lease_store.lookup(SCOPE, "key-1")
    assert record.lease_expires_at == start + 3 * LEASE
    assert record.fencing_token == lease.token
    assert record.status == IN_PROGRESS
    with pytest.raises(ClaimTaken):
        take(lease_store, claim_at(start + LEASE), replace=record)
    taken = take(lease_store, claim_at(start + 3 * LEASE), replace=record)
    assert lease_store.lookup(SCOPE, "key-1").fencing_token == taken.token


def test_scopes_keep_the_same_key_apart(lease_store, clock):
    other_scope = "tenant:Zürich  POST api/charges/ " + "x" * 200
    mine = take(lease_store, claim_at(clock()))
    theirs = take(lease_store, claim_at(clock(), scope=other_scope, fingerprint="theirs"))

    assert lease_store.complete(mine, RESPONSE, now=clock(), expires_at=clock() + TTL)

    assert lease_store.lookup(SCOPE, "key-1").status == COMPLETED
    record = lease_store.lookup(other_scope, "key-1")
    assert record.status == IN_PROGRESS
    assert record.fingerprint == "theirs"
    assert record.fencing_token == theirs.token
    assert lease_store.release(theirs)
    assert lease_store.lookup(SCOPE, "key-1").response == RESPONSE


# --- races: real threads, each with its own database connection, released by a barrier ---

RACING_STORES = [
    pytest.param("database", id="database", marks=pytest.mark.needs_row_locks),
    pytest.param("cache", id="cache", marks=pytest.mark.redis),
    pytest.param("cache-builtin", id="cache-builtin", marks=pytest.mark.redis),
]


def race(attempt) -> list[object]:
    """Run ``attempt`` on THREADS threads at once; return each one's lease or exception."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[object] = [None] * THREADS

    def run(index: int) -> None:
        try:
            barrier.wait(THREAD_TIMEOUT)
            outcomes[index] = attempt()
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT)
        assert not thread.is_alive(), "a claiming thread did not finish in time"
    return outcomes


def assert_one_winner(outcomes: list[object]) -> Lease:
    leases = [outcome for outcome in outcomes if isinstance(outcome, Lease)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, ClaimTaken)]
    assert len(leases) == 1, outcomes
    assert len(losers) == THREADS - 1, outcomes
    return leases[0]


@pytest.mark.parametrize("lease_store", RACING_STORES, indirect=True)
def test_racing_claims_of_a_new_key_have_exactly_one_winner(lease_store, clock):
    now = clock()

    winner = assert_one_winner(race(lambda: take(lease_store, claim_at(now))))

    assert lease_store.lookup(SCOPE, "key-1").fencing_token == winner.token


@pytest.mark.parametrize("lease_store", RACING_STORES, indirect=True)
def test_racing_takeovers_of_an_abandoned_claim_have_exactly_one_winner(lease_store, clock):
    take(lease_store, claim_at(clock()))
    abandoned = lease_store.lookup(SCOPE, "key-1")
    later = clock.advance(LEASE.total_seconds())

    winner = assert_one_winner(race(lambda: take(lease_store, claim_at(later), replace=abandoned)))

    assert lease_store.lookup(SCOPE, "key-1").fencing_token == winner.token


# --- what only the cache store promises: its Redis keys, values and lifetimes ---


@pytest.fixture(params=sorted(CACHE_ALIASES.values()))
def cache_store(request, cache_prefix):
    """The cache store on django-redis and on Django's own Redis backend."""
    return CacheStore(request.param, prefix=cache_prefix)


def raw(store: CacheStore, scope=SCOPE, key="key-1"):
    return store.client, store.redis_key(scope, key)


@pytest.mark.redis
def test_cache_keys_use_the_prefix_and_the_caches_own_key_function(cache_store):
    digest = hashlib.sha256(f"{SCOPE}\nkey-1".encode()).hexdigest()
    cache = caches[cache_store.alias]

    name = cache_store.redis_key(SCOPE, "key-1")

    assert name == cache.make_key(f"{cache_store.prefix}:{digest}")
    assert name.startswith(f"{cache.key_prefix}:{cache.version}:{cache_store.prefix}:")
    assert cache_store.redis_key(SCOPE + " ", "key-1") != name


@pytest.mark.redis
def test_cache_values_are_versioned_json(cache_store, clock):
    now = clock()
    lease = take(cache_store, claim_at(now))
    client, name = raw(cache_store)

    value = json.loads(client.get(name))
    assert value["v"] == FORMAT_VERSION
    assert value["status"] == IN_PROGRESS
    assert value["token"] == lease.token
    assert value["lease_expires_at"] == int((now + LEASE).timestamp() * 1000)

    cache_store.complete(lease, RESPONSE, now=now, expires_at=now + TTL)
    value = json.loads(client.get(name))
    assert value["v"] == FORMAT_VERSION
    assert value["status"] == COMPLETED
    assert value["token"] == lease.token
    assert value["fingerprint"] == FINGERPRINT
    assert value["created_at"] == int(now.timestamp() * 1000)
    assert value["response_status"] == 201
    assert value["response_headers"] == [list(pair) for pair in RESPONSE.headers]


@pytest.mark.redis
def test_redis_keeps_a_claim_for_its_retention_or_its_lease_whichever_is_longer(cache_store, clock):
    client, name = raw(cache_store)
    take(cache_store, claim_at(clock()), ttl=timedelta(seconds=100))
    assert 99_000 < client.pttl(name) <= 100_000

    _client, other = raw(cache_store, key="key-2")
    take(cache_store, claim_at(clock(), key="key-2"), lease=timedelta(seconds=200), ttl=LEASE)
    assert 199_000 < client.pttl(other) <= 200_000


@pytest.mark.redis
def test_redis_keeps_a_completed_record_until_it_expires(cache_store, clock):
    lease = take(cache_store, claim_at(clock()))
    client, name = raw(cache_store)

    cache_store.complete(lease, RESPONSE, now=clock(), expires_at=clock() + timedelta(seconds=120))

    assert 119_000 < client.pttl(name) <= 120_000


@pytest.mark.redis
def test_renewing_lengthens_the_redis_lifetime_by_the_lease_extension(cache_store, clock):
    start = clock()
    lease = take(cache_store, claim_at(start), ttl=LEASE)
    client, name = raw(cache_store)

    cache_store.renew(lease, lease_expires_at=start + LEASE + timedelta(seconds=60))

    assert 89_000 < client.pttl(name) <= 90_000


@pytest.mark.redis
def test_a_takeover_of_a_vanished_record_claims_the_key_afresh(cache_store, clock):
    first = take(cache_store, claim_at(clock()))
    seen = cache_store.lookup(SCOPE, "key-1")
    cache_store.release(first)

    second = take(cache_store, claim_at(clock.advance(1)), replace=seen)

    assert cache_store.lookup(SCOPE, "key-1").fencing_token == second.token


@pytest.mark.redis
def test_naive_times_round_trip_when_use_tz_is_off(cache_store):
    now = datetime(2030, 1, 2, 3, 4, 5)
    with override_settings(USE_TZ=False):
        lease = take(cache_store, claim_at(now))
        assert cache_store.complete(lease, RESPONSE, now=now, expires_at=now + TTL)
        record = cache_store.lookup(SCOPE, "key-1")

    assert record.expires_at == now + TTL
    assert record.expires_at.tzinfo is None
