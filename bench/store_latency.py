"""Measure the latency the idempotency layer adds per store and mode, in process.

Usage (PostgreSQL and Redis on loopback; the database ``idem_bench_store`` is created if missing):

    .venv/bin/python bench/store_latency.py [--requests 2000]

Every request goes through ``django.test.Client`` to the same DRF view body (it writes one row):
bare ("plain"), and decorated for database-atomic, database-lease and cache-lease. Each round
sends a plain request and, for each store and mode, a first execution (a new key each time) and a
replay (one completed key, again and again), so background load hits every kind alike. It prints
the median and the 99th percentile of each kind, and how much a first execution or a replay adds
to (or saves on) the plain request. Then it times the lease-store calls alone (lookup, claim,
complete) on PostgreSQL and on Redis, which separates the stores' cost from the engine's own work
(policy, fingerprint, rendering and capturing the response, the event log line).
``BENCH_DATABASE_URL`` and ``REDIS_URL`` override the services.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = ("database-atomic", "database-lease", "cache-lease")
WARMUP = 100
PAYLOAD = json.dumps({"amount": 1})


def setup() -> None:
    """Configure Django with the bench settings and migrate the bench database."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_store"
    import django

    django.setup()
    from django.db import connection

    connection.creation.create_test_db(verbosity=0, keepdb=True)


def sender(url: str) -> Callable[[str | None], float]:
    """Return a function that POSTs to ``url`` with a key (or none) and returns the seconds taken."""
    from django.test import Client

    client = Client()

    def send(key: str | None) -> float:
        headers = {} if key is None else {"Idempotency-Key": key}
        started = time.perf_counter()
        response = client.post(url, PAYLOAD, content_type="application/json", headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 201:
            raise SystemExit(f"{url} answered {response.status_code}: {response.content[:300]!r}")
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        if key is not None and key.endswith("-replay") != replayed:
            raise SystemExit(f"{url}: unexpected replay state for key {key!r}")
        return elapsed

    return send


def measure(requests: int, run: str) -> dict[str, list[float]]:
    """Return the seconds taken by each request, by kind: plain, then first and replay per store.

    Every round sends one request of each kind, so all kinds meet the same background load.
    """
    plain = sender("/plain/")
    idempotent = {configuration: sender(f"/{configuration}/") for configuration in CONFIGURATIONS}
    for configuration in CONFIGURATIONS:
        _seed(configuration, f"{run}-{configuration}-replay")
    samples: dict[str, list[float]] = {"plain": []}
    for configuration in CONFIGURATIONS:
        samples[f"{configuration} first"] = []
        samples[f"{configuration} replay"] = []
    for index in range(WARMUP + requests):
        timings = [plain(None)]
        for configuration, send in idempotent.items():
            timings.append(send(f"{run}-{configuration}-{index}"))
            timings.append(send(f"{run}-{configuration}-replay"))
        if index >= WARMUP:
            for name, seconds in zip(samples, timings, strict=True):
                samples[name].append(seconds)
    return samples


def measure_store_operations(requests: int, run: str) -> dict[str, dict[str, list[float]]]:
    """Return the seconds each lease-store call takes, database and Redis interleaved.

    One round per key: the lookup that finds nothing, the claim, the completion, and the lookup
    of the completed record that a replay makes.
    """
    from datetime import timedelta

    from django.utils import timezone

    from django_idempotency.stores.base import ClaimRequest, StoredResponse
    from django_idempotency.stores.cache import CacheStore
    from django_idempotency.stores.database import DatabaseStore

    stores = {"database": DatabaseStore(), "cache (Redis)": CacheStore()}
    response = StoredResponse(201, (("Content-Type", "application/json"),), b'{"id": 1}')
    names = ("lookup (none)", "claim_lease", "complete", "lookup (done)")
    samples = {store: {name: [] for name in names} for store in stores}
    for index in range(WARMUP + requests):
        for store_name, store in stores.items():
            now = timezone.now()
            key = f"{run}-ops-{index}"
            claim = ClaimRequest("bench POST ops", key, "POST", "/ops/", "f" * 64, now)
            timings = []
            started = time.perf_counter()
            store.lookup(claim.scope, key)
            timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            lease = store.claim_lease(
                claim,
                replace=None,
                lease_expires_at=now + timedelta(seconds=30),
                expires_at=now + timedelta(hours=1),
            )
            timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.complete(lease, response, now=now, expires_at=now + timedelta(hours=1))
            timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.lookup(claim.scope, key)
            timings.append(time.perf_counter() - started)
            if index >= WARMUP:
                for name, seconds in zip(names, timings, strict=True):
                    samples[store_name][name].append(seconds)
    return samples


def _seed(configuration: str, key: str) -> None:
    """Complete ``key`` once, so every later request with it is a replay."""
    from django.test import Client

    response = Client().post(
        f"/{configuration}/",
        PAYLOAD,
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )
    if response.status_code != 201 or response.headers.get("Idempotent-Replayed"):
        raise SystemExit(f"could not seed the replay key: {response.status_code}")


def percentile(values: list[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def report_operations(results: dict[str, dict[str, list[float]]], requests: int) -> None:
    print(f"\nThe store calls alone, {requests} of each, ms")
    print(f"{'store':<16} {'call':<16} {'median':>8} {'p99':>8}")
    for store, samples in results.items():
        for name, values in samples.items():
            median = statistics.median(values) * 1000
            p99 = percentile(values, 0.99) * 1000
            print(f"{store:<16} {name:<16} {median:8.2f} {p99:8.2f}")


def report(samples: dict[str, list[float]], requests: int) -> None:
    print(f"Latency per request, in process (django.test.Client), {requests} requests each, ms")
    print(f"{'request':<24} {'median':>8} {'p99':>8} {'added median':>13} {'added p99':>10}")
    plain_median = statistics.median(samples["plain"]) * 1000
    plain_p99 = percentile(samples["plain"], 0.99) * 1000
    for name, values in samples.items():
        median = statistics.median(values) * 1000
        p99 = percentile(values, 0.99) * 1000
        added = "" if name == "plain" else f"{median - plain_median:+13.2f}"
        added_p99 = "" if name == "plain" else f"{p99 - plain_p99:+10.2f}"
        print(f"{name:<24} {median:8.2f} {p99:8.2f} {added:>13} {added_p99:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=2000, help="measured requests per kind (default 2000)"
    )
    args = parser.parse_args()
    setup()
    from django.core.cache import caches
    from django.db import connection

    from django_idempotency.models import IdempotencyKey
    from tests.testapp.models import Charge

    print(
        f"PostgreSQL {connection.pg_version} database {connection.settings_dict['NAME']!r}, Redis "
        f"{caches['redis'].client.get_client().info('server')['redis_version']}\n"
    )
    run = uuid.uuid4().hex[:8]
    try:
        results = measure(args.requests, run)
        operations = measure_store_operations(args.requests, run)
    finally:
        IdempotencyKey.objects.all().delete()
        Charge.objects.all().delete()
        caches["redis"].delete_pattern("bench:*")
    report(results, args.requests)
    report_operations(operations, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
