"""Purge rate and request latency during a purge, on PostgreSQL.

    .venv/bin/python bench/purge.py --rows 1000000

Creates the database ``idem_bench_purge`` (or the one ``--database-url`` names) when missing and
migrates it. Then, for the default batch size and each ``--batch-size`` given:

1. empties the table and seeds ``--rows`` expired records with 1 KiB JSON bodies plus ``--live``
   live ones (one ``INSERT ... SELECT generate_series``, then ``VACUUM ANALYZE``);
2. runs ``manage.py purge_idempotency_keys`` (``call_command``) alone and reports rows/s.

Then it seeds again and measures idempotent requests (``POST /api/charges/`` of the test app, a
new key each, through Django's test client) from ``--clients`` client processes: first for
``--baseline`` seconds with no purge, then while the purge runs in this process. It prints
the p50/p99 latency of both, their ratio, and the purge rate under that load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

from postgres import setup_django

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/idem_bench_purge"

# The body is ~1 KiB of JSON that does not compress well (PostgreSQL stores it inline).
SEED = """
INSERT INTO django_idempotency_idempotencykey (
    scope, key, method, path, fingerprint, status, response_status, response_headers,
    response_body, created_at, completed_at, expires_at, lease_expires_at, fencing_token
)
SELECT
    'user:' || (i %% 5000) || ' POST api/charges',
    %(prefix)s || md5('key' || i),
    'POST',
    '/api/charges/',
    md5('payload' || i) || md5('payload' || i),
    'completed',
    201,
    ('[["Content-Type", "application/json"], ["Location", "/api/charges/' || i || '/"]]')::jsonb,
    convert_to(
        '{"id": ' || i || ', "amount": ' || (i %% 10000) || ', "currency": "EUR", "note": "'
        || substr(repeat(md5(i::text), 31), 1, 960) || '"}',
        'UTF8'
    ),
    %(expires)s - interval '24 hours',
    %(expires)s - interval '24 hours',
    %(expires)s,
    NULL,
    0
FROM generate_series(1, %(rows)s) AS i
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="expired rows; default 1000000")
    parser.add_argument("--live", type=int, default=10_000, help="live rows; default 10000")
    parser.add_argument(
        "--batch-size",
        type=int,
        action="append",
        default=[],
        help="also time the purge alone with this batch size (repeatable)",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes; default 2")
    parser.add_argument(
        "--baseline", type=float, default=15.0, help="seconds of requests without a purge"
    )
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"default: {DEFAULT_URL}")
    args = parser.parse_args()
    if min([args.rows, args.live, args.clients, *args.batch_size]) < 1 or args.baseline <= 0:
        parser.error("--rows, --live, --clients, --batch-size and --baseline must be positive")

    setup_django(args.database_url)

    from django_idempotency.conf import conf

    print_machine()
    default = conf.PURGE_BATCH_SIZE
    print(f"\nPurge alone ({args.rows:,} expired + {args.live:,} live records, 1 KiB bodies):")
    for size in [None, *args.batch_size]:
        seed(args.rows, args.live)
        deleted, elapsed = purge(size)
        label = f"{size or default}{' (default)' if size is None else ''}"
        print(
            f"  batch size {label:<16} {deleted:>10,} rows in {elapsed:7.1f} s = {deleted / elapsed:>9,.0f} rows/s"
        )

    print(
        f"\nLatency of POST /api/charges/ with a new Idempotency-Key each, "
        f"{args.clients} client processes (batch size {default}):"
    )
    seed(args.rows, args.live)
    without = run_clients(args.clients, seconds=args.baseline)
    during, (deleted, elapsed) = run_clients(args.clients, during=lambda: purge(None))
    report("without purge", without, args.baseline)
    report("during purge", during, elapsed)
    ratio = percentile(during, 99) / percentile(without, 99)
    print(f"  p99 during / without: {ratio:.2f}x")
    print(
        f"  purge under load: {deleted:,} rows in {elapsed:.1f} s = {deleted / elapsed:,.0f} rows/s"
    )
    return 0


def print_machine() -> None:
    """Print the date, the machine and the software versions."""
    import django
    from django.db import connection

    memory = "?"
    with Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    model = platform.processor() or "?"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    print(f"Purge benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"Machine: {os.cpu_count()} cores ({model}), {memory} RAM; {platform.system()}")
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {server} on {connection.settings_dict['HOST']}"
    )


def seed(rows: int, live: int) -> None:
    """Empty the tables and insert ``rows`` expired and ``live`` live records."""
    from django.db import connection
    from django.utils import timezone as django_timezone

    now = django_timezone.now()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_idempotency_idempotencykey, testapp_charge")
        cursor.execute(SEED, {"rows": rows, "prefix": "old-", "expires": now - _hours(1)})
        cursor.execute(SEED, {"rows": live, "prefix": "live-", "expires": now + _hours(24)})
        cursor.execute("VACUUM ANALYZE django_idempotency_idempotencykey")
    print(f"  (seeded in {time.perf_counter() - started:.1f} s)", flush=True)


def _hours(n: int):
    from datetime import timedelta

    return timedelta(hours=n)


def purge(batch_size: int | None) -> tuple[int, float]:
    """Run the command; return the number of records it deleted and how long it took."""
    from django.core.management import call_command

    options = {} if batch_size is None else {"batch_size": batch_size}
    output = StringIO()
    started = time.perf_counter()
    call_command("purge_idempotency_keys", stdout=output, **options)
    elapsed = time.perf_counter() - started
    # Requests running meanwhile add records, so the count comes from the command's summary.
    deleted = re.match(r"Deleted (\d+) expired", output.getvalue())
    if deleted is None:
        raise SystemExit(f"unexpected output: {output.getvalue()!r}")
    return int(deleted.group(1)), elapsed


def client_process(stop, results, ready) -> None:
    """Send requests with new keys until ``stop`` is set; put ``(start, latency)`` on ``results``.

    ``time.perf_counter`` is the system-wide monotonic clock on Linux, so the parent can compare
    the start times with its own.
    """
    from django.db import connections
    from django.test import Client

    client = Client()
    latencies = []
    ready.release()
    try:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(
                "/api/charges/",
                '{"amount": 1}',
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            )
            latencies.append((started, time.perf_counter() - started))
            if response.status_code != 201:
                raise SystemExit(f"a request answered {response.status_code}: {response.content!r}")
    finally:
        connections.close_all()
        results.put(latencies)


def run_clients(count: int, *, seconds: float | None = None, during=None):
    """Run ``count`` client processes for ``seconds``, or while ``during()`` runs here.

    Return the latencies, or the latencies and what ``during()`` returned.
    """
    from django.db import connections

    connections.close_all()  # never share a connection with a forked child
    context = multiprocessing.get_context("fork")
    stop, results, ready = context.Event(), context.Queue(), context.Semaphore(0)
    processes = [
        context.Process(target=client_process, args=(stop, results, ready)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    for _process in processes:
        ready.acquire()
    time.sleep(1.0)  # let the clients warm up before measuring
    window_start = time.perf_counter()
    outcome = during() if during is not None else time.sleep(seconds)
    window_end = time.perf_counter()
    stop.set()
    samples = [sample for _process in processes for sample in results.get()]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit("a client process failed")
    latencies = [latency for start, latency in samples if window_start <= start < window_end]
    return latencies if during is None else (latencies, outcome)


def percentile(values: list[float], pct: float) -> float:
    """Return the nearest-rank ``pct`` percentile of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, round(pct / 100 * len(ordered)) - 1)]


def report(label: str, latencies: list[float], seconds: float) -> None:
    """Print the request count, rate and latency percentiles."""
    print(
        f"  {label:<14} {len(latencies):>6} requests in {seconds:5.1f} s "
        f"({len(latencies) / seconds:6.1f}/s): p50 {percentile(latencies, 50) * 1000:6.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:6.1f} ms, "
        f"max {max(latencies) * 1000:6.1f} ms, mean {statistics.fmean(latencies) * 1000:6.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
