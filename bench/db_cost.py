"""Count the SQL statements (round trips) the idempotency layer adds to a request on PostgreSQL.

Usage (PostgreSQL on loopback; creates or reuses the database ``test_<name>``):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/idem_bench .venv/bin/python bench/db_cost.py

Each scenario sends one request through ``django.test.Client`` to the same DRF view (it writes one
row) and prints every statement Django sent, ``BEGIN`` and ``COMMIT`` included: with psycopg each
one is a round trip to the server. Nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/idem_bench"
ATOMIC_URL = "/charges/"
LEASE_URL = "/lease-charges/"

#: What the design needs at least, per scenario, on top of the view's own statements.
MINIMUM = {
    "first execution": (
        "the lookup SELECT (no lock; it is what lets a replay skip the transaction), BEGIN, "
        "INSERT claim (the lock bound rides on it), UPDATE response, COMMIT: +5. The claim and "
        "the response must live in the view's transaction, so BEGIN/INSERT/UPDATE/COMMIT are "
        "the floor"
    ),
    "first execution, LOCK_TIMEOUT=None": "+5: lookup, BEGIN, INSERT claim, UPDATE response, COMMIT",
    "replay": "1: the lookup finds the completed record and answers from it",
    "mismatch": "1: the lookup finds another fingerprint",
    "in progress (atomic, lock timeout)": (
        "the lookup finds nothing committed, the claim INSERT waits on the running request's "
        "uncommitted row until the lock timeout and the transaction rolls back: SELECT, BEGIN, "
        "INSERT with its lock bound (times out), ROLLBACK = 4"
    ),
    "in progress (lease)": (
        "1: the lookup finds a committed in-progress record with a live lease "
        "(plus one SELECT per poll when IDEMPOTENCY_WAIT > 0)"
    ),
    "first execution (lease)": (
        "the lookup, the claim committed at once (one INSERT in autocommit), the view in its "
        "own transaction, then the UPDATE that saves the response if the fencing token still "
        "matches (autocommit): +3"
    ),
    "without a key (lease view)": "0 added: the view's own BEGIN, INSERT, COMMIT",
    "without a key": "0 added: no key, nothing to look up (the view's own INSERT, autocommit)",
}


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.reliability.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    if connection.vendor != "postgresql":
        sys.exit(f"db_cost.py counts PostgreSQL round trips; DATABASE_URL is {connection.vendor}")
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, keepdb=True)


def capture(send: Callable[[], object]) -> tuple[object, list[str]]:
    """Return ``send()``'s response and every statement this thread's connection ran for it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = send()
    return response, [query["sql"] for query in queries.captured_queries]


def post(
    url: str, data: dict[str, object], key: str | None, **settings: object
) -> Callable[[], object]:
    from django.test import Client, override_settings

    headers = {} if key is None else {"Idempotency-Key": key}

    def send() -> object:
        with override_settings(**settings):
            return Client().post(
                url, json.dumps(data), content_type="application/json", headers=headers
            )

    return send


def hold_in_background(url: str, key: str, seconds: float) -> threading.Thread:
    """Start a request for ``key`` that runs for ``seconds`` on another connection."""
    from django.db import connection

    def run() -> None:
        try:
            post(url, {"amount": 1, "sleep": seconds}, key)()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(min(1.0, seconds / 3))  # let it claim the key
    return thread


def scenarios() -> list[tuple[str, Callable[[], object], int]]:
    """Return (name, request, expected status) in the order they must run."""
    first = post(ATOMIC_URL, {"amount": 1}, "cost-first")
    return [
        ("without a key", post(ATOMIC_URL, {"amount": 1}, None), 201),
        ("first execution", first, 201),
        ("replay", first, 201),
        ("mismatch", post(ATOMIC_URL, {"amount": 2}, "cost-first"), 422),
        (
            "first execution, LOCK_TIMEOUT=None",
            post(ATOMIC_URL, {"amount": 1}, "cost-no-timeout", IDEMPOTENCY_LOCK_TIMEOUT=None),
            201,
        ),
        ("without a key (lease view)", post(LEASE_URL, {"amount": 1}, None), 201),
        ("first execution (lease)", post(LEASE_URL, {"amount": 1}, "cost-lease-first"), 201),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    args = parser.parse_args()
    setup(args.database_url)
    from django_idempotency.models import IdempotencyKey
    from tests.testapp.models import Charge

    IdempotencyKey.objects.all().delete()
    Charge.objects.all().delete()
    results: list[tuple[str, int, list[str]]] = []
    for name, send, expected in scenarios():
        response, statements = capture(send)
        results.append((name, response.status_code, statements))
        assert response.status_code == expected, (name, response.status_code, response.content)

    blocker = hold_in_background(ATOMIC_URL, "cost-busy", 3.0)
    response, statements = capture(
        post(ATOMIC_URL, {"amount": 1, "sleep": 3.0}, "cost-busy", IDEMPOTENCY_LOCK_TIMEOUT=0.2)
    )
    results.append(("in progress (atomic, lock timeout)", response.status_code, statements))
    blocker.join()

    blocker = hold_in_background(LEASE_URL, "cost-lease", 3.0)
    response, statements = capture(post(LEASE_URL, {"amount": 1, "sleep": 3.0}, "cost-lease"))
    results.append(("in progress (lease)", response.status_code, statements))
    blocker.join()

    report(results)
    return 0


def report(results: list[tuple[str, int, list[str]]]) -> None:
    """Print every scenario's statements, how many the layer added, and the design's minimum."""
    alone = {name: len(statements) for name, _status, statements in results}
    print("PostgreSQL statements per request, BEGIN and COMMIT included (each one round trip)\n")
    for name, status, statements in results:
        view_ran = not name.startswith(("replay", "mismatch", "in progress"))
        baseline = alone["without a key (lease view)" if "lease" in name else "without a key"]
        added = len(statements) - (baseline if view_ran else 0)
        print(
            f"== {name}: HTTP {status}, {len(statements)} statements ({added:+d} from idempotency)"
        )
        for sql in statements:
            print(f"   {' '.join(sql.split())[:150]}")
        print(f"   minimum by design: {MINIMUM[name]}\n")


if __name__ == "__main__":
    sys.exit(main())
