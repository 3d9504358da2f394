"""Kill what runs a request mid-view: the gunicorn worker, or its database session.

Afterwards every key is either completed once with its single side effect, or free to run again;
never executed twice and never stuck past its lease.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.db import connection

from django_idempotency.models import IdempotencyKey
from tests.reliability.server import InFlight, Reply, Server
from tests.testapp.models import Charge

pytestmark = [
    pytest.mark.needs_row_locks,
    pytest.mark.timeout(60),
    pytest.mark.django_db(transaction=True),
]

ATOMIC_URL = "/charges/"
LEASE_URL = "/lease-charges/"


def wait_for_report(server: Server, ref: str, timeout: float = 20) -> dict[str, int]:
    """Return the pid and database session of the worker that holds ``ref`` inside its view."""
    path = Path(server.report_dir) / f"{ref}.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no worker reported {ref}:\n{server.output()[-3000:]}"
        time.sleep(0.05)
    return json.loads(path.read_text())


def kill_session(session: int) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", [session])
        else:
            cursor.execute(f"KILL {int(session)}")


def assert_ran_once(server: Server, url: str, key: str, data: dict) -> None:
    """A retry runs the view (the key was free), a second one replays it; one Charge in all."""
    retry = server.post_json(url, data, key=key)
    assert retry.status == 201 and not retry.replayed, (retry, server.output()[-3000:])
    again = server.post_json(url, data, key=key)
    assert (again.status, again.body, again.replayed) == (201, retry.body, True)
    assert Charge.objects.filter(note=data["ref"]).count() == 1
    assert IdempotencyKey.objects.get(key=key).status == "completed"


def test_sigkill_of_the_worker_in_an_atomic_view_frees_the_key(server):
    data = {"ref": "atomic-kill", "amount": 3}
    first = InFlight(lambda: server.post_json(ATOMIC_URL, data, key="k-atomic", hold=30))
    report = wait_for_report(server, data["ref"])

    os.kill(report["pid"], signal.SIGKILL)
    assert not isinstance(first.join(), Reply), "a killed worker answered"
    # The database rolled the claim back with the view's write: nothing is left to replay.
    assert_ran_once(server, ATOMIC_URL, "k-atomic", data)


def test_killed_database_session_fails_the_request_and_frees_the_key(server):
    data = {"ref": "session-kill", "amount": 4}
    first = InFlight(lambda: server.post_json(ATOMIC_URL, data, key="k-session", hold=2))
    report = wait_for_report(server, data["ref"])

    kill_session(report["session"])
    outcome = first.join()
    assert isinstance(outcome, Reply), outcome
    assert outcome.status >= 500 and not outcome.replayed, outcome
    assert_ran_once(server, ATOMIC_URL, "k-session", data)


def test_sigkill_in_a_lease_view_blocks_retries_until_the_lease_ends(server):
    data = {"ref": "lease-kill", "amount": 5}
    first = InFlight(lambda: server.post_json(LEASE_URL, data, key="k-lease", hold=30))
    report = wait_for_report(server, data["ref"])
    os.kill(report["pid"], signal.SIGKILL)
    assert not isinstance(first.join(), Reply), "a killed worker answered"

    record = IdempotencyKey.objects.get(key="k-lease")
    assert record.status == "in_progress"
    lease_end = record.lease_expires_at
    assert lease_end is not None
    # A machine too slow to ask within the lease skips this step; the rest still holds.
    if datetime.now(timezone.utc) < lease_end:
        during = server.post_json(LEASE_URL, data, key="k-lease")
        if datetime.now(timezone.utc) < lease_end:
            # Asked and answered within the lease: the crashed claim still counts as running.
            assert during.status == 409, during
            assert during.headers["content-type"] == "application/problem+json"
    assert Charge.objects.filter(note=data["ref"]).count() == 0

    time.sleep(max(0.0, (lease_end - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    assert_ran_once(server, LEASE_URL, "k-lease", data)
