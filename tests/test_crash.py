"""A request that dies mid-view never wedges its key and never leaves half of its effects behind.

The views here are key-only (``fingerprint=False``), so a retry is the same operation without the
injected sleep or failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import TransactionTestCase, override_settings

from django_idempotency.models import IdempotencyKey
from tests.helpers import SignedInClient, assert_problem, post
from tests.testapp import views
from tests.testapp.models import Charge

ROOT = Path(__file__).resolve().parent.parent
URL = "/api/key-only/"
VIEW = "api_charge_key_only"
REPLAYED = "Idempotent-Replayed"

#: The child's backend has written its Charge row and sits inside the open claim transaction.
CHILD_HOLDS_CHARGE = """
    SELECT a.pid FROM pg_stat_activity a
    WHERE a.application_name = %s
      AND a.state = 'idle in transaction'
      AND a.query LIKE 'INSERT INTO "testapp_charge"%%'
      AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted
                  AND l.relation = 'testapp_charge'::regclass AND l.mode = 'RowExclusiveLock')
      AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted
                  AND l.relation = %s::regclass AND l.mode = 'RowExclusiveLock')
"""


def counts() -> tuple[int, int]:
    return Charge.objects.count(), IdempotencyKey.objects.count()


def query_one(sql: str, params: list[object]) -> object | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def worker_database_url(application_name: str) -> str:
    """Return a URL to the parent's test database that tags the child's backend."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    host, port = db["HOST"] or "localhost", db["PORT"] or 5432
    name = quote(db["NAME"])
    return f"postgres://{auth}@{host}:{port}/{name}?application_name={application_name}"


def start_worker(application_name: str, key: str, body: dict) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": worker_database_url(application_name),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", URL, key, json.dumps(body)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.kill()
    worker.communicate(timeout=5)


def wait_for(check: Callable[[], object], what: str, worker: subprocess.Popen[bytes]) -> object:
    """Poll ``check`` until it returns something truthy; fail after 10 s or if the worker exits."""
    deadline = time.monotonic() + 10
    while not (value := check()):
        if worker.returncode is None and worker.poll() is not None:
            _out, err = worker.communicate()
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}:\n{err.decode()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.mark.postgresql
@pytest.mark.timeout(20)
class TestKilledWorker(TransactionTestCase):
    def setUp(self) -> None:
        views.executions.clear()

    def test_a_killed_worker_leaves_nothing_and_the_key_free(self):
        name = f"idem-crash-{uuid.uuid4().hex[:12]}"
        worker = start_worker(name, "crash", {"amount": 7, "sleep": 60})
        self.addCleanup(stop, worker)
        table = IdempotencyKey._meta.db_table
        backend = wait_for(
            lambda: query_one(CHILD_HOLDS_CHARGE, [name, table]),
            "the worker's Charge row and claim",
            worker,
        )
        assert counts() == (0, 0), "the in-flight transaction is visible"

        with override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.2):
            duplicate = post(SignedInClient(), URL, {"amount": 7}, key="crash")
        assert_problem(duplicate, 409, "in-progress")
        assert int(duplicate["Retry-After"]) >= 0
        assert views.executions[VIEW] == 0

        worker.kill()
        assert worker.wait(timeout=5) == -signal.SIGKILL
        wait_for(
            lambda: not query_one("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]),
            "PostgreSQL to end the killed worker's backend",
            worker,
        )
        assert counts() == (0, 0)

        client = SignedInClient()
        retry = post(client, URL, {"amount": 7}, key="crash")
        assert retry.status_code == 201, retry.content
        assert REPLAYED not in retry
        again = post(client, URL, {"amount": 7}, key="crash")
        assert (again.status_code, again.content, again[REPLAYED]) == (201, retry.content, "true")
        assert views.executions[VIEW] == 1
        assert counts() == (1, 1)
        assert IdempotencyKey.objects.get().status == "completed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(20)
@pytest.mark.parametrize("fail", ["raise", "500"])
def test_a_failure_after_writing_leaves_nothing_and_a_retry_runs(fail):
    client = SignedInClient(raise_request_exception=False)
    for attempt in (1, 2):
        failed = post(client, URL, {"amount": 3, "fail": fail}, key="boom")
        assert failed.status_code == 500
        assert REPLAYED not in failed
        # The Charge the view wrote was rolled back with the claim; the failure was not replayed.
        assert counts() == (0, 0)
        assert views.executions[VIEW] == attempt

    retry = post(client, URL, {"amount": 3}, key="boom")
    assert retry.status_code == 201, retry.content
    assert REPLAYED not in retry
    assert views.executions[VIEW] == 3
    assert json.loads(retry.content)["id"] == Charge.objects.get().pk
    assert IdempotencyKey.objects.get().status == "completed"

    replayed = post(client, URL, {"amount": 3}, key="boom")
    assert (replayed.status_code, replayed.content, replayed[REPLAYED]) == (
        201,
        retry.content,
        "true",
    )
    assert views.executions[VIEW] == 3
