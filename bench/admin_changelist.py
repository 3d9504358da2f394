"""Time the key-record admin pages on PostgreSQL with a large table.

    .venv/bin/python bench/admin_changelist.py --rows 1000000

Creates the database ``idem_bench_admin`` (or the one ``--database-url`` names) when missing,
migrates it, fills it with ``--rows`` key records in a realistic mix of states (two days of
traffic: completed, expired, live and stale lease-mode claims, 2xx to 5xx statuses, ~200-byte
JSON bodies) with one ``INSERT ... SELECT generate_series``, then requests each admin page
through Django's test client as a superuser and prints the median time of ``--runs`` runs
and the slowest SQL statement of each page. The data is kept for the next run; ``--reseed``
starts again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from postgres import setup_django

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/idem_bench_admin"

SEED = """
INSERT INTO django_idempotency_idempotencykey (
    scope, key, method, path, fingerprint, status, response_status, response_headers,
    response_body, created_at, completed_at, expires_at, lease_expires_at, fencing_token
)
SELECT
    'user:' || (i %% 5000) || ' ' || method || ' ' || route,
    md5('key' || i),
    method,
    '/' || route || CASE WHEN method = 'PATCH' THEN '/' || (i %% 9973) || '/' ELSE '/' END,
    md5('payload' || i) || md5('payload' || i),
    CASE WHEN claim THEN 'in_progress' ELSE 'completed' END,
    CASE WHEN claim THEN NULL ELSE status END,
    CASE WHEN claim THEN '[]'::jsonb ELSE
        ('[["Content-Type", "application/json"], ["Location", "/api/charges/' || i || '/"]]')::jsonb
    END,
    CASE WHEN claim THEN NULL ELSE convert_to(
        '{"id": ' || i || ', "amount": ' || (i %% 10000) || ', "currency": "EUR", "note": "'
        || repeat('x', 140) || '"}', 'UTF8') END,
    created,
    CASE WHEN claim THEN NULL ELSE created + interval '150 milliseconds' END,
    created + interval '150 milliseconds' + interval '24 hours',
    CASE WHEN claim THEN created + interval '30 seconds' END,
    CASE WHEN claim THEN 1 ELSE 0 END
FROM (
    SELECT
        i,
        now() - (%(rows)s - i) * interval '172800 seconds' / %(rows)s AS created,
        CASE WHEN i %% 7 = 0 THEN 'PATCH' ELSE 'POST' END AS method,
        CASE WHEN i %% 7 = 0 THEN 'api/orders' ELSE 'api/charges' END AS route,
        i %% 50 = 0 AS claim,
        CASE
            WHEN i %% 200 = 1 THEN 500
            WHEN i %% 100 = 2 THEN 409
            WHEN i %% 20 = 3 THEN 303
            WHEN i %% 3 = 0 THEN 200
            ELSE 201
        END AS status
    FROM generate_series(1, %(rows)s) AS i
) AS rows
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="default: 1000000")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per page; default: 7")
    parser.add_argument("--reseed", action="store_true", help="empty the table and fill it again")
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"default: {DEFAULT_URL}")
    args = parser.parse_args()
    if args.rows < 1 or args.runs < 1:
        parser.error("--rows and --runs must be positive")

    setup_django(args.database_url)
    seed(args.rows, reseed=args.reseed)
    run_pages(args.runs)
    return 0


def seed(rows: int, *, reseed: bool) -> None:
    """Fill the table with ``rows`` records, unless it already holds that many."""
    from django.db import connection

    from django_idempotency.models import IdempotencyKey

    present = IdempotencyKey.objects.count()
    if present == rows and not reseed:
        print(f"Reusing {present} records.")
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_idempotency_idempotencykey")
        cursor.execute(SEED, {"rows": rows})
        cursor.execute("VACUUM ANALYZE django_idempotency_idempotencykey")
    print(f"Seeded {rows} records in {time.perf_counter() - started:.1f} s.")


def pages() -> list[tuple[str, str]]:
    """Return (label, URL) for every page timed."""
    from django.db.models import Max
    from django.urls import reverse

    from django_idempotency.models import IdempotencyKey

    url = reverse("admin:django_idempotency_idempotencykey_changelist")
    newest = IdempotencyKey.objects.aggregate(newest=Max("created_at"))["newest"]
    known = IdempotencyKey.objects.order_by("pk").values_list("key", "scope", "pk")[
        IdempotencyKey.objects.count() // 2
    ]
    year, month, day = newest.year, newest.month, newest.day
    return [
        ("unfiltered", url),
        ("page 2", f"{url}?p=2"),
        ("status = completed", f"{url}?status__exact=completed"),
        ("status = in progress", f"{url}?status__exact=in_progress"),
        ("method = PATCH", f"{url}?method__exact=PATCH"),
        ("response 2xx", f"{url}?response_class=2xx"),
        ("response 3xx", f"{url}?response_class=3xx"),
        ("response 4xx", f"{url}?response_class=4xx"),
        ("response 5xx", f"{url}?response_class=5xx"),
        ("expired", f"{url}?expired=yes"),
        ("live", f"{url}?expired=no"),
        ("search: exact key", f"{url}?q={known[0]}"),
        ("search: scope prefix", f"{url}?q=user:4242%20"),
        ("search: path prefix", f"{url}?q=/api/orders/4242/"),
        ("date: year", f"{url}?created_at__year={year}"),
        ("date: month", f"{url}?created_at__year={year}&created_at__month={month}"),
        (
            "date: day",
            f"{url}?created_at__year={year}&created_at__month={month}&created_at__day={day}",
        ),
        ("detail page", reverse("admin:django_idempotency_idempotencykey_change", args=[known[2]])),
    ]


def run_pages(runs: int) -> None:
    """Print the median time of each page and its slowest SQL statement."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user, _created = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    print(
        f"{'page':<24}{'median ms':>10}{'min ms':>9}{'SQL ms':>8}{'queries':>9}"
        "  slowest query of the last run (ms)"
    )
    for label, url in pages():
        client.get(url)  # warm-up
        timings = []
        sql_timings = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            sql_timings.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{label}: {url} answered {response.status_code}")
        slowest = max(captured.captured_queries, key=lambda query: float(query["time"]))
        sql = " ".join(slowest["sql"].split())
        print(
            f"{label:<24}{statistics.median(timings):>10.1f}{min(timings):>9.1f}"
            f"{statistics.median(sql_timings):>8.1f}{len(captured.captured_queries):>9}"
            f"  {float(slowest['time']) * 1000:.1f}: {sql[:90]}"
        )


if __name__ == "__main__":
    sys.exit(main())
