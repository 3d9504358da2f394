"""PostgreSQL goes away during traffic and comes back: clean failures, then exactly-once retries.

The database that stops is a private cluster made for this test, never the shared server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.reliability.private_postgres import PrivatePostgres, binaries
from tests.reliability.server import InFlight, Reply, Server

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.timeout(150),
    pytest.mark.skipif(binaries() is None, reason="no PostgreSQL server binaries to run a cluster"),
]

URL = "/charges/"
#: How long any request may take while the database is down.
FAIL_FAST = 10.0


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    private = PrivatePostgres()
    try:
        yield private
    finally:
        private.destroy()


@pytest.fixture
def outage_server(cluster, tmp_path) -> Iterator[tuple[PrivatePostgres, str, Server]]:
    url = cluster.create_database("outage")
    reports = tmp_path / "reports"
    reports.mkdir()
    running = Server(url, workers=2, report_dir=reports, log=tmp_path / "gunicorn.log")
    try:
        yield cluster, url, running
    finally:
        running.stop()


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute(sql).fetchall()


def send(server: Server, key: str, hold: float | None = None) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = server.post_json(URL, {"ref": key, "amount": 1}, key=key, hold=hold, timeout=30)
    return reply, time.monotonic() - started


def test_requests_fail_cleanly_while_the_database_is_down_and_retries_run_once(outage_server):
    cluster, url, server = outage_server
    before, _ = send(server, "before")
    assert before.status == 201, (before, server.output()[-3000:])

    in_flight = InFlight(lambda: send(server, "in-flight", hold=1.5)[0])
    deadline = time.monotonic() + 20
    while not (server.report_dir / "in-flight.json").exists():
        assert time.monotonic() < deadline, server.output()[-3000:]
        time.sleep(0.05)
    cluster.stop("fast")

    during = {}
    for index in range(6):
        key = f"down-{index}"
        reply, elapsed = send(server, key)
        assert elapsed < FAIL_FAST, (key, elapsed)
        # Nothing can be looked up or claimed: the store is unavailable, said as a problem.
        assert reply.status == 503, (reply, server.output()[-3000:])
        assert reply.headers["content-type"] == "application/problem+json"
        during[key] = reply
    interrupted = in_flight.join()
    assert isinstance(interrupted, Reply) and interrupted.status >= 500, interrupted

    cluster.start()
    keys = ["in-flight", *during]
    stored = rows(url, "SELECT key FROM django_idempotency_idempotencykey ORDER BY key")
    assert stored == [("before",)], "a request that failed during the outage left a record"
    assert rows(url, "SELECT note FROM testapp_charge") == [("before",)]

    for key in keys:
        retry, _ = send(server, key)
        assert retry.status == 201 and not retry.replayed, (key, retry, server.output()[-3000:])
        again, _ = send(server, key)
        assert (again.status, again.body, again.replayed) == (201, retry.body, True)
    replay_of_before, _ = send(server, "before")
    assert (replay_of_before.body, replay_of_before.replayed) == (before.body, True)
    counts = rows(url, "SELECT note, count(*) FROM testapp_charge GROUP BY note ORDER BY note")
    assert counts == sorted((key, 1) for key in ["before", *keys])
