"""The purge against requests that take over an expired key, while a delete receiver is connected.

Audit apps connect ``pre_delete``/``post_delete`` receivers, and then Django deletes by primary key
what it loaded first, unless the purge locks its batch. Each scenario takes an expired key over
during a purge, on its own thread and connection, and proves the purge keeps the new record: the
retry replays it and the view never runs twice for one key.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models.signals import post_save, pre_delete
from django.utils import timezone

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory
from tests.test_concurrency import THREAD_TIMEOUT, Background, send, wait_for_execution
from tests.testapp import views
from tests.testapp.models import Charge

pytestmark = [
    pytest.mark.needs_row_locks,
    pytest.mark.timeout(60),
    pytest.mark.django_db(transaction=True),
]

KEY = "reused-key"


class Audit:
    """A ``pre_delete`` receiver like an audit app's: note each deleted key, then call ``then``."""

    def __init__(self, then):
        self.keys: list[str] = []
        self.then = then

    def __call__(self, sender, instance, **kwargs):
        self.keys.append(instance.key)
        self.then()


def seed_expired(url, user):
    """Run one request with ``KEY``, then let its record expire; return the first response."""
    first = send(url, {"amount": 5}, KEY, user=user)
    assert first.status == 201
    past = timezone.now() - timedelta(hours=1)
    assert IdempotencyKey.objects.filter(key=KEY).update(expires_at=past) == 1
    # A second expired record, so that every batch has something to delete and its receiver runs.
    IdempotencyKeyFactory(key="other-expired", expired=True)


def assert_kept_and_replayed(url, user, takeover, executions):
    """The taken-over record survived the purge, and a retry replays it without running the view."""
    record = IdempotencyKey.objects.get(key=KEY)
    assert record.status == "completed"
    assert bytes(record.response_body) == takeover.content
    retry = send(url, {"amount": 5}, KEY, user=user)
    assert retry.replayed, retry
    assert retry.content == takeover.content
    assert sum(views.executions.values()) == executions, views.executions


def test_a_take_over_that_commits_while_the_batch_is_deleted_is_kept():
    """Atomic mode: the take-over holds the row when the batch is picked, and commits before its
    DELETE. The batch was read while the record was still expired, so only a lock or a DELETE
    that re-checks expiry can keep it."""
    user = User.objects.create_user("payer")
    seed_expired("/api/charges/", user)
    deleting = threading.Event()

    def hold_until_the_purge_deletes(sender, instance, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            deleting.wait(THREAD_TIMEOUT)

    audit = Audit(then=deleting.set)
    post_save.connect(hold_until_the_purge_deletes, sender=Charge, weak=False)
    pre_delete.connect(audit, sender=IdempotencyKey, weak=False)
    try:
        takeover = Background(lambda: send("/api/charges/", {"amount": 5}, KEY, user=user))
        # The take-over has locked and rewritten the row, uncommitted, and waits in its view.
        wait_for_execution("api_charge", 2)
        purged = IdempotencyKey.objects.purge_expired(on_batch=lambda _count: deleting.set())
        outcome = takeover.result()
    finally:
        post_save.disconnect(hold_until_the_purge_deletes, sender=Charge)
        pre_delete.disconnect(audit, sender=IdempotencyKey)
    assert outcome.status == 201 and not outcome.replayed, outcome
    assert_kept_and_replayed("/api/charges/", user, outcome, executions=2)
    assert Charge.objects.count() == 2
    # The receiver saw exactly what was deleted: the other record, not the one taken over.
    assert audit.keys == ["other-expired"]
    assert purged == 1


def lock_waits():
    """Return whether a session of this database server waits for a row lock."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0
        # MariaDB 10.11 leaves an autocommit statement's lock wait out of INNODB_TRX.
        cursor.execute("SHOW ENGINE INNODB STATUS")
        return "TRX HAS BEEN WAITING" in cursor.fetchone()[2]


def test_a_lease_take_over_that_commits_after_the_batch_was_loaded_is_kept():
    """Lease mode: the take-over commits at once, and does so after the purge loaded the batch
    for its receivers and before it deleted it. It either finishes there, or waits for the
    purge's lock; the purge is held until one of the two is seen."""
    user = User.objects.create_user("payer")
    seed_expired("/api/lease/", user)
    started, released = threading.Event(), threading.Event()
    takeovers: list[Background] = []

    def take_over_before_the_delete():
        if not takeovers:
            takeovers.append(Background(lambda: send("/api/lease/", {"amount": 5}, KEY, user=user)))
            started.set()
            released.wait(THREAD_TIMEOUT)

    audit = Audit(then=take_over_before_the_delete)
    pre_delete.connect(audit, sender=IdempotencyKey, weak=False)
    try:
        purger = Background(lambda: IdempotencyKey.objects.purge_expired())
        assert started.wait(THREAD_TIMEOUT)
        (takeover,) = takeovers
        deadline = time.monotonic() + THREAD_TIMEOUT
        while takeover.is_alive() and not lock_waits():
            assert time.monotonic() < deadline, "the take-over neither finished nor waited"
            time.sleep(0.005)
        released.set()
        purged = purger.result()
        outcome = takeover.result()
    finally:
        released.set()
        pre_delete.disconnect(audit, sender=IdempotencyKey)
    assert outcome.status == 201 and not outcome.replayed, outcome
    assert_kept_and_replayed("/api/lease/", user, outcome, executions=2)
    # The purge may delete the old record under its lock; the take-over then claims the key anew.
    assert "other-expired" in audit.keys
    assert purged == len(audit.keys)
