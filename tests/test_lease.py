"""Lease mode on the database store: committed claims, fencing, release, reclaim, wait, heartbeat."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_idempotency import signals
from django_idempotency.lease import Heartbeat
from django_idempotency.models import IdempotencyKey
from tests.helpers import SignedInClient, assert_problem, post
from tests.testapp import views
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(settings):
    clock = Clock()
    settings.IDEMPOTENCY_CLOCK = clock
    return clock


def in_thread(target, *args, **kwargs):
    """Start ``target`` in a thread with its own database connection; return (thread, result)."""
    result: dict[str, object] = {}

    def run():
        try:
            result["response"] = target(*args, **kwargs)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_the_claim_commits_before_the_view_and_completes_with_its_token():
    seen = {}

    def snapshot(**kwargs):
        # Another connection sees the committed claim while the view runs.
        seen["record"] = IdempotencyKey.objects.values("status", "fencing_token").get()

    original = views.perform

    def perform(name, data, user):
        thread, _ = in_thread(snapshot)
        thread.join()
        return original(name, data, user)

    views.perform = perform
    try:
        response = post(SignedInClient(), "/api/lease/", {"amount": 5}, key="k1")
    finally:
        views.perform = original
    assert response.status_code == 201
    assert seen["record"]["status"] == "in_progress"
    record = IdempotencyKey.objects.get()
    assert record.status == "completed"
    assert record.fencing_token == seen["record"]["fencing_token"] > 0
    assert record.lease_expires_at is None
    replay = post(SignedInClient(), "/api/lease/", {"amount": 5}, key="k1")
    assert replay.status_code == 201
    assert replay.content == response.content
    assert replay["Idempotent-Replayed"] == "true"
    assert views.executions["api_charge_lease"] == 1


def test_a_duplicate_while_the_first_runs_gets_409_at_once():
    first, _ = in_thread(post, SignedInClient(), "/api/lease/", {"sleep": 1.0}, key="k1")
    deadline = time.monotonic() + 5
    while not IdempotencyKey.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    duplicate = post(SignedInClient(), "/api/lease/", {"sleep": 1.0}, key="k1")
    answered_in = time.monotonic() - started
    first.join()
    assert_problem(duplicate, 409, "in-progress")
    assert duplicate["Retry-After"] == "1"
    assert answered_in < 0.9, "lease mode answers a duplicate at once, without waiting"
    assert views.executions["api_charge_lease"] == 1


def test_with_wait_a_duplicate_polls_and_replays_the_result():
    first, result = in_thread(post, SignedInClient(), "/api/lease-wait/", {"sleep": 0.8}, key="k1")
    deadline = time.monotonic() + 5
    while not IdempotencyKey.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    duplicate = post(SignedInClient(), "/api/lease-wait/", {"sleep": 0.8}, key="k1")
    first.join()
    assert duplicate.status_code == 201
    assert duplicate["Idempotent-Replayed"] == "true"
    assert duplicate.content == result["response"].content
    assert views.executions["api_charge_lease_wait"] == 1


def test_an_exception_releases_the_claim_and_the_retry_runs():
    client = SignedInClient()
    with pytest.raises(RuntimeError):
        post(client, "/api/lease/", {"fail": "raise"}, key="k1")
    assert not IdempotencyKey.objects.exists()
    assert post(client, "/api/lease/", {}, key="k1").status_code == 201
    assert views.executions["api_charge_lease"] == 2


def test_a_response_that_is_not_stored_releases_the_claim():
    client = SignedInClient()
    assert post(client, "/api/lease/", {"fail": "500"}, key="k1").status_code == 500
    assert not IdempotencyKey.objects.exists()
    assert post(client, "/api/lease/", {"fail": "500"}, key="k1").status_code == 500
    assert views.executions["api_charge_lease"] == 2


def crash_after_claim(client, url, key):
    """Leave what a worker killed inside the view leaves: a committed in-progress claim."""
    assert post(client, url, {"amount": 1}, key=key).status_code == 201
    IdempotencyKey.objects.update(
        status="in_progress",
        response_status=None,
        response_body=None,
        completed_at=None,
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )


def test_a_crashed_claim_blocks_retries_for_its_lease_then_is_reclaimed(clock):
    client = SignedInClient()
    crash_after_claim(client, "/api/lease/", "k1")
    IdempotencyKey.objects.update(lease_expires_at=clock.now + timedelta(seconds=30))
    assert_problem(post(client, "/api/lease/", {"amount": 1}, key="k1"), 409, "in-progress")
    clock.advance(29)
    assert_problem(post(client, "/api/lease/", {"amount": 1}, key="k1"), 409, "in-progress")
    token = IdempotencyKey.objects.get().fencing_token
    clock.advance(1)
    retry = post(client, "/api/lease/", {"amount": 1}, key="k1")
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    record = IdempotencyKey.objects.get()
    assert record.status == "completed"
    assert record.fencing_token > token
    assert views.executions["api_charge_lease"] == 2


def test_a_reclaimed_claim_with_another_payload_is_still_a_mismatch(clock):
    client = SignedInClient()
    crash_after_claim(client, "/api/lease/", "k1")
    IdempotencyKey.objects.update(lease_expires_at=clock.now - timedelta(seconds=1))
    # An abandoned claim is free: a new request with any payload may take it.
    assert post(client, "/api/lease/", {"amount": 2}, key="k1").status_code == 201
    assert_problem(post(client, "/api/lease/", {"amount": 3}, key="k1"), 422, "key-mismatch")


def test_a_stale_owner_cannot_store_over_the_new_owner(caplog):
    lost = []
    signals.lease_lost.connect(lambda sender, event, **kw: lost.append(event), weak=False)
    first, result = in_thread(post, SignedInClient(), "/api/lease/", {"sleep": 0.8}, key="k1")
    deadline = time.monotonic() + 5
    while not IdempotencyKey.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # Another request took the key over after the lease ran out: the fencing token changed.
    IdempotencyKey.objects.update(fencing_token=models_token() + 1)
    first.join()
    try:
        assert result["response"].status_code == 201  # the client still gets its response
        record = IdempotencyKey.objects.get()
        assert record.status == "in_progress"
        assert record.response_body is None
        assert [event.decision for event in lost] == ["lease_lost"]
        assert any(
            r.levelname == "WARNING" and "lease_lost" in r.getMessage() for r in caplog.records
        )
    finally:
        signals.lease_lost.receivers.clear()


def models_token() -> int:
    return IdempotencyKey.objects.get().fencing_token


def test_without_heartbeat_a_slow_view_loses_its_lease_to_a_retry():
    first, _ = in_thread(post, SignedInClient(), "/api/lease-short/", {"sleep": 1.5}, key="k1")
    time.sleep(1.0)
    retry = post(SignedInClient(), "/api/lease-short/", {"sleep": 0}, key="k1")
    first.join()
    # The documented trade-off of a lease shorter than the view: both run.
    assert retry.status_code == 201
    assert views.executions["api_charge_lease_short"] == 2


def test_a_heartbeat_keeps_a_slow_view_s_lease_and_its_thread_ends():
    threads_before = threading.active_count()
    first, result = in_thread(
        post, SignedInClient(), "/api/lease-heartbeat/", {"sleep": 1.5}, key="k1"
    )
    time.sleep(1.0)
    duplicate = post(SignedInClient(), "/api/lease-heartbeat/", {"sleep": 1.5}, key="k1")
    first.join()
    assert_problem(duplicate, 409, "in-progress")
    assert result["response"].status_code == 201
    assert IdempotencyKey.objects.get().status == "completed"
    assert views.executions["api_charge_lease_heartbeat"] == 1
    assert not [t for t in threading.enumerate() if t.name == "idempotency-heartbeat"]
    assert threading.active_count() <= threads_before


def test_the_heartbeat_stops_renewing_once_the_lease_is_lost():
    from django_idempotency.policy import Policy
    from django_idempotency.stores.base import Lease

    class Store:
        calls = 0

        def renew(self, lease, *, lease_expires_at):
            Store.calls += 1
            return False

    policy = Policy.build(mode="lease", lease=0.09)
    with Heartbeat(Store(), Lease("s", "k", 1), policy) as beat:  # type: ignore[arg-type]
        time.sleep(0.3)
    assert Store.calls == 1
    assert beat.renewals == 0
    assert not beat.thread.is_alive()


@pytest.mark.django_db(transaction=False)
def test_inside_a_transaction_lease_mode_claims_in_that_transaction():
    # A test case (or ATOMIC_REQUESTS) wraps the view in a transaction: the claim cannot commit
    # before it, so it lives in it, exactly as in atomic mode.
    client = SignedInClient()
    first = post(client, "/api/lease/", {"amount": 1}, key="k1")
    replay = post(client, "/api/lease/", {"amount": 1}, key="k1")
    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert views.executions["api_charge_lease"] == 1


@pytest.mark.postgresql
def test_a_connection_lost_between_claim_and_completion(clock):
    """The view has run: its client gets its response; the claim waits out its lease."""
    import psycopg

    original = views.perform
    settings_dict = connection.settings_dict

    def perform(name, data, user):
        response = original(name, data, user)
        backend = connection.connection.info.backend_pid
        with psycopg.connect(
            host=settings_dict["HOST"] or "127.0.0.1",
            port=settings_dict["PORT"] or 5432,
            user=settings_dict["USER"],
            dbname=settings_dict["NAME"],
            autocommit=True,
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend])
        return response

    views.perform = perform
    try:
        response = post(SignedInClient(), "/api/lease/", {"amount": 7}, key="k1")
    finally:
        views.perform = original
        connection.close()
    assert response.status_code == 201
    assert json.loads(response.content)["amount"] == 7
    record = IdempotencyKey.objects.get()
    assert record.status == "in_progress"  # not corrupted, not completed
    assert Charge.objects.count() == 1
    assert_problem(
        post(SignedInClient(), "/api/lease/", {"amount": 7}, key="k1"), 409, "in-progress"
    )
    clock.advance(31)
    assert post(SignedInClient(), "/api/lease/", {"amount": 7}, key="k1").status_code == 201
    assert views.executions["api_charge_lease"] == 2
