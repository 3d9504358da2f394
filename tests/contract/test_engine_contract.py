"""The engine's contract on every store and mode pair: database-atomic, database-lease, cache-lease.

Each test runs the real views of ``tests.testapp`` through the full stack, against the test
database and (for the cache store) the real Redis, with ``IDEMPOTENCY_CLOCK`` set to a fake clock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.test import override_settings
from rest_framework.test import APIClient

from django_idempotency.conf import conf
from django_idempotency.events import LEASE_LOST
from django_idempotency.scope import compose_scope
from django_idempotency.stores.base import ClaimRequest
from django_idempotency.stores.cache import CacheStore
from django_idempotency.stores.database import DatabaseStore
from tests.contract.conftest import COMBINATIONS, LEASE_COMBINATIONS
from tests.factories import UserFactory
from tests.helpers import assert_problem, post, signed_in_user
from tests.testapp import views
from tests.testapp.models import Charge

URL = "/api/charges/"
OTHER_URL = "/api/charges-other/"
VIEW = "api_charge"
#: A key-only view: a retry may differ from the first request in its injected sleep.
KEY_ONLY_URL = "/api/key-only/"
KEY_ONLY_VIEW = "api_charge_key_only"
REPLAYED = "Idempotent-Replayed"
THREADS = 20
THREAD_TIMEOUT = 20.0

every_pair = pytest.mark.parametrize("configured", COMBINATIONS, indirect=True)
lease_pairs = pytest.mark.parametrize("configured", LEASE_COMBINATIONS, indirect=True)


def client(user=None) -> APIClient:
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(user if user is not None else signed_in_user())
    return api


class Request(threading.Thread):
    """Send one POST on its own thread, so on its own database connection."""

    def __init__(self, url, data, key, *, barrier: threading.Barrier | None = None) -> None:
        super().__init__(daemon=True)
        self.args = (url, data, key)
        self.barrier = barrier
        self.response = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            if self.barrier is not None:
                self.barrier.wait(THREAD_TIMEOUT)
            url, data, key = self.args
            self.response = post(client(), url, data, key=key)
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def result(self):
        self.join(THREAD_TIMEOUT)
        assert not self.is_alive(), "a request thread did not finish in time"
        if self.error is not None:
            raise self.error
        return self.response


def wait_for_execution(name: str, count: int = 1) -> None:
    deadline = time.monotonic() + THREAD_TIMEOUT
    while views.executions[name] < count:
        assert time.monotonic() < deadline, f"{name} did not start: {views.executions}"
        time.sleep(0.005)


def assert_replay_of(response, original) -> None:
    assert response.status_code == original.status_code
    assert response.headers.get(REPLAYED) == "true"
    assert response.content == original.content
    assert response["Content-Type"] == original["Content-Type"]
    assert response.get("Location") == original.get("Location")


def assert_in_progress(response) -> None:
    assert_problem(response, 409, "in-progress")
    assert int(response["Retry-After"]) >= 0


def abandon_claim(store: str, key: str, now) -> None:
    """Commit an in-progress claim on ``KEY_ONLY_URL`` as a worker that then died would have."""
    lease_store = CacheStore() if store.startswith("cache") else DatabaseStore()
    claim = ClaimRequest(
        scope=compose_scope(f"user:{signed_in_user().pk}", "POST", KEY_ONLY_URL.strip("/")),
        key=key,
        method="POST",
        path=KEY_ONLY_URL,
        fingerprint="",
        now=now,
    )
    lease_store.claim_lease(
        claim, replace=None, lease_expires_at=now + conf.LEASE, expires_at=now + conf.TTL
    )


# --- claim races ---


@pytest.mark.parametrize(
    "configured",
    [
        pytest.param(
            ("database", "atomic"), id="database-atomic", marks=pytest.mark.needs_row_locks
        ),
        pytest.param(("database", "lease"), id="database-lease", marks=pytest.mark.needs_row_locks),
        pytest.param(("cache", "lease"), id="cache-lease", marks=pytest.mark.redis),
        pytest.param(("cache-builtin", "lease"), id="cache-builtin-lease", marks=pytest.mark.redis),
    ],
    indirect=True,
)
def test_concurrent_duplicates_execute_exactly_once(configured):
    barrier = threading.Barrier(THREADS)
    data = {"amount": 5, "sleep": 0.3}

    requests = [Request(URL, data, "race-key", barrier=barrier) for _ in range(THREADS)]
    responses = [request.result() for request in requests]

    statuses = sorted(response.status_code for response in responses)
    assert all(status < 500 for status in statuses), statuses
    assert views.executions[VIEW] == 1
    assert Charge.objects.count() == 1
    [first] = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    for response in responses:
        if response is first:
            continue
        if response.status_code == 409:
            assert_in_progress(response)
        else:
            assert_replay_of(response, first)
    assert configured.count() == 1
    assert_replay_of(post(client(), URL, data, key="race-key"), first)


# --- leases: fencing, expiry and reclaim ---


@lease_pairs
def test_a_stale_owner_cannot_overwrite_the_result_of_the_request_that_took_over(
    configured, clock, caplog
):
    caplog.set_level(logging.INFO, logger="django_idempotency")
    stale = Request(KEY_ONLY_URL, {"amount": 1, "sleep": 2}, "fenced")
    wait_for_execution(KEY_ONLY_VIEW)

    assert_in_progress(post(client(), KEY_ONLY_URL, {"amount": 2}, key="fenced"))
    clock.advance(conf.LEASE.total_seconds() + 1)
    newer = post(client(), KEY_ONLY_URL, {"amount": 3}, key="fenced")
    assert newer.status_code == 201
    assert REPLAYED not in newer.headers

    late = stale.result()
    # The stale request's client still gets what its view returned; the record keeps the newer one.
    assert late.status_code == 201
    assert json.loads(late.content)["amount"] == 1
    assert views.executions[KEY_ONLY_VIEW] == 2
    assert_replay_of(post(client(), KEY_ONLY_URL, {}, key="fenced"), newer)
    lost = [
        r for r in caplog.records if getattr(r, "idempotency", {}).get("decision") == LEASE_LOST
    ]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING


@lease_pairs
def test_an_abandoned_claim_blocks_retries_until_its_lease_ends(configured, clock):
    abandon_claim(configured.store, "crashed", clock())

    assert_in_progress(post(client(), KEY_ONLY_URL, {"amount": 1}, key="crashed"))
    clock.advance(conf.LEASE.total_seconds() - 1)
    assert_in_progress(post(client(), KEY_ONLY_URL, {"amount": 1}, key="crashed"))
    assert views.executions[KEY_ONLY_VIEW] == 0

    clock.advance(1)
    retry = post(client(), KEY_ONLY_URL, {"amount": 1}, key="crashed")
    assert retry.status_code == 201
    assert REPLAYED not in retry.headers
    assert views.executions[KEY_ONLY_VIEW] == 1
    assert_replay_of(post(client(), KEY_ONLY_URL, {"amount": 1}, key="crashed"), retry)
    assert views.executions[KEY_ONLY_VIEW] == 1


# --- what is stored, replayed and released ---


@every_pair
@pytest.mark.parametrize("fail", ["raise", "500"])
def test_a_failed_request_releases_its_key_and_its_retry_runs_again(configured, fail):
    data = {"amount": 1, "fail": fail}

    first = post(client(), URL, data, key="fails")
    assert first.status_code == 500
    assert configured.count() == 0

    retry = post(client(), URL, data, key="fails")
    assert retry.status_code == 500
    assert REPLAYED not in retry.headers
    assert views.executions[VIEW] == 2
    assert configured.count() == 0


@every_pair
@pytest.mark.parametrize(
    "data", [{"amount": 7}, {"amount": 7, "binary": True}], ids=["json", "binary"]
)
def test_a_replay_is_byte_identical(configured, data):
    first = post(client(), URL, data, key="replayed")
    assert first.status_code in (200, 201)

    replay = post(client(), URL, data, key="replayed")

    assert_replay_of(replay, first)
    assert "X-Request-Secret" not in replay.headers
    assert views.executions[VIEW] == 1


@every_pair
def test_a_record_expires_its_ttl_after_completion(configured, clock):
    with override_settings(IDEMPOTENCY_TTL=60, IDEMPOTENCY_LEASE=300):
        started = clock()
        first = Request(KEY_ONLY_URL, {"amount": 1, "sleep": 0.5}, "expiring")
        wait_for_execution(KEY_ONLY_VIEW)
        clock.advance(50)  # the view finishes 50 s after it started
        first = first.result()
        assert first.status_code == 201

        clock.now = started + timedelta(seconds=109)
        assert_replay_of(post(client(), KEY_ONLY_URL, {"amount": 1}, key="expiring"), first)
        assert views.executions[KEY_ONLY_VIEW] == 1

        clock.now = started + timedelta(seconds=110)
        again = post(client(), KEY_ONLY_URL, {"amount": 1}, key="expiring")
        assert again.status_code == 201
        assert REPLAYED not in again.headers
        assert views.executions[KEY_ONLY_VIEW] == 2


@every_pair
def test_a_key_reused_with_another_payload_is_refused_and_the_record_kept(configured):
    first = post(client(), URL, {"amount": 1}, key="reused")
    before = configured.snapshot()

    assert_problem(post(client(), URL, {"amount": 2}, key="reused"), 422, "key-mismatch")

    assert configured.snapshot() == before
    assert views.executions[VIEW] == 1
    assert_replay_of(post(client(), URL, {"amount": 1}, key="reused"), first)


@every_pair
def test_the_same_key_in_another_scope_is_another_record(configured):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")

    for_alice = post(client(alice), URL, {"amount": 1}, key="shared-key")
    for_bob = post(client(bob), URL, {"amount": 1}, key="shared-key")
    elsewhere = post(client(alice), OTHER_URL, {"amount": 1}, key="shared-key")

    assert [r.status_code for r in (for_alice, for_bob, elsewhere)] == [201, 201, 201]
    assert not any(REPLAYED in r.headers for r in (for_alice, for_bob, elsewhere))
    assert json.loads(for_alice.content)["owner"] == alice.pk
    assert json.loads(for_bob.content)["owner"] == bob.pk
    assert views.executions[VIEW] == 3
    assert configured.count() == 3
    assert_replay_of(post(client(alice), URL, {"amount": 1}, key="shared-key"), for_alice)
    assert_replay_of(post(client(bob), URL, {"amount": 1}, key="shared-key"), for_bob)
    assert views.executions[VIEW] == 3
