"""The purge: which records it deletes, in what batches, and the command that runs it."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings
from django.utils import timezone as django_timezone

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory
from tests.helpers import SignedInDjangoClient, signed_in_scope

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
LEASE_PAST = NOW - timedelta(minutes=10)


def frozen_clock() -> datetime:
    """The clock the command reads through ``IDEMPOTENCY_CLOCK``."""
    return NOW


FROZEN = override_settings(IDEMPOTENCY_CLOCK="tests.test_purge.frozen_clock")


def completed(expires_at, **fields):
    return {"created_at": expires_at - 24 * HOUR, "expires_at": expires_at, **fields}


def claim(lease_expires_at, expires_at):
    return {
        "in_progress": True,
        "created_at": NOW - 2 * HOUR,
        "lease_expires_at": lease_expires_at,
        "expires_at": expires_at,
    }


#: Every state a record can be in at NOW, and whether the purge may delete it.
STATES = {
    "completed, expired": (completed(NOW - HOUR), True),
    "completed, live": (completed(NOW + HOUR), False),
    "completed without body, expired": (completed(NOW - HOUR, response_body=None), True),
    "completed, expires exactly now": (completed(NOW), True),
    "completed, expires a microsecond from now": (
        completed(NOW + timedelta(microseconds=1)),
        False,
    ),
    "claim, lease live, retention over": (claim(NOW + timedelta(seconds=10), NOW - HOUR), False),
    "claim, lease past, retention live": (claim(LEASE_PAST, NOW + HOUR), False),
    "claim, lease past, retention over": (claim(LEASE_PAST, NOW - timedelta(minutes=1)), True),
    "claim, lease and retention end exactly now": (claim(NOW, NOW), True),
    "claim, lease live by a microsecond, retention over": (
        claim(NOW + timedelta(microseconds=1), NOW - HOUR),
        False,
    ),
}


def seed_states(using="default"):
    """Create one record per state on ``using``; return ``{key: deletable}``."""
    expected = {}
    for name, (fields, deletable) in STATES.items():
        record = IdempotencyKeyFactory.build(key=name, **fields)
        record.save(using=using)
        expected[name] = deletable
    return expected


def seed(count, *, using="default", expires_at=NOW - HOUR, prefix="due"):
    """Create ``count`` completed records expiring at ``expires_at`` on ``using``."""
    IdempotencyKey.objects.using(using).bulk_create(
        IdempotencyKeyFactory.build(key=f"{prefix}-{n}", **completed(expires_at))
        for n in range(count)
    )


def keys(using="default"):
    return set(IdempotencyKey.objects.using(using).values_list("key", flat=True))


def purge(*args, **options):
    """Run the command at NOW; return its output."""
    out = StringIO()
    with FROZEN:
        call_command("purge_idempotency_keys", *args, stdout=out, stderr=out, **options)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["queryset", "command"])
def test_deletes_exactly_the_records_whose_retention_ended_and_that_hold_no_live_lease(how):
    expected = seed_states()
    if how == "queryset":
        deleted = IdempotencyKey.objects.purge_expired(now=NOW)
    else:
        deleted = int(re.search(r"Deleted (\d+)", purge()).group(1))
    assert keys() == {name for name, deletable in expected.items() if not deletable}
    assert deleted == sum(expected.values())
    # Running it again finds nothing: the purge is idempotent.
    assert IdempotencyKey.objects.purge_expired(now=NOW) == 0


@pytest.mark.django_db
def test_purge_uses_the_clock_setting_when_no_time_is_given():
    seed(2, expires_at=NOW)
    seed(1, expires_at=NOW + timedelta(seconds=1), prefix="live")
    with FROZEN:
        assert IdempotencyKey.objects.purge_expired() == 2
    assert keys() == {"live-0"}


@pytest.mark.django_db
def test_batches_by_primary_key_and_reports_each_batch():
    seed(10)
    seed(2, expires_at=NOW + HOUR, prefix="live")
    batches = []
    deleted = IdempotencyKey.objects.purge_expired(now=NOW, batch_size=3, on_batch=batches.append)
    assert deleted == 10
    assert batches == [3, 3, 3, 1]
    assert keys() == {"live-0", "live-1"}


@pytest.mark.django_db
def test_batch_size_defaults_to_the_setting():
    seed(5)
    batches = []
    with override_settings(IDEMPOTENCY_PURGE_BATCH_SIZE=2):
        IdempotencyKey.objects.purge_expired(now=NOW, on_batch=batches.append)
    assert batches == [2, 2, 1]


@pytest.mark.django_db
def test_dry_run_counts_and_deletes_nothing():
    seed(4)
    seed(1, expires_at=NOW + HOUR, prefix="live")
    assert IdempotencyKey.objects.purge_expired(now=NOW, dry_run=True) == 4
    assert purge("--dry-run") == "Dry run: would delete 4 expired idempotency keys.\n"
    assert len(keys()) == 5


@pytest.mark.django_db
def test_batch_size_below_one_is_refused_by_the_queryset():
    with pytest.raises(ValueError, match="batch_size must be a positive number"):
        IdempotencyKey.objects.purge_expired(now=NOW, batch_size=0)


@pytest.mark.django_db(databases=["default", "other"])
def test_using_purges_that_database_only():
    seed(3, using="default")
    seed(4, using="other")
    assert IdempotencyKey.objects.using("other").purge_expired(now=NOW) == 4
    assert len(keys("default")) == 3
    assert keys("other") == set()


@pytest.mark.django_db(databases=["default", "other"])
def test_database_option_purges_that_database_only():
    seed(3, using="default")
    seed(4, using="other")
    assert purge("--database", "other").startswith("Deleted 4 expired idempotency keys in 1 batch ")
    assert len(keys("default")) == 3
    assert keys("other") == set()


@pytest.mark.django_db(databases=["default", "other"])
@override_settings(DATABASE_ROUTERS=["tests.routers.KeysOnOtherDatabase"])
def test_command_defaults_to_the_database_the_router_writes_keys_to():
    seed(3, using="default")
    seed(4, using="other")
    assert purge().startswith("Deleted 4 expired")
    assert len(keys("default")) == 3
    assert keys("other") == set()


SUMMARY = r"Deleted 10 expired idempotency keys in 4 batches \(\d+\.\d\d s\)\.\n"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("verbosity", "pattern"),
    [
        (0, ""),
        (1, SUMMARY),
        (
            2,
            "Batch 1: deleted 3 records \\(3 so far\\)\\.\n"
            "Batch 2: deleted 3 records \\(6 so far\\)\\.\n"
            "Batch 3: deleted 3 records \\(9 so far\\)\\.\n"
            "Batch 4: deleted 1 record \\(10 so far\\)\\.\n" + SUMMARY,
        ),
    ],
)
def test_output_follows_verbosity(verbosity, pattern):
    seed(10)
    output = purge("--batch-size", "3", verbosity=verbosity)
    assert re.fullmatch(pattern, output), output
    assert keys() == set()


@pytest.mark.django_db
def test_singular_wording_for_one_record():
    seed(1)
    assert re.fullmatch(
        r"Deleted 1 expired idempotency key in 1 batch \(\d+\.\d\d s\)\.\n", purge()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("args", [(), ("--dry-run",)])
def test_nothing_due_says_so(args):
    seed(2, expires_at=NOW + HOUR)
    assert purge(*args) == "No idempotency keys are due for purging.\n"
    assert purge(*args, verbosity=0) == ""
    assert len(keys()) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("--batch-size", "0"), {}, "argument --batch-size: must be a positive integer, not '0'"),
        (("--batch-size", "-5"), {}, "argument --batch-size: must be a positive integer, not '-5'"),
        (
            ("--batch-size", "ten"),
            {},
            "argument --batch-size: must be a positive integer, not 'ten'",
        ),
        ((), {"batch_size": 0}, "--batch-size must be a positive integer, not '0'"),
        ((), {"batch_size": 2.5}, "--batch-size must be a positive integer, not 2.5"),
        (
            ("--database", "nowhere"),
            {},
            "--database 'nowhere' is not a configured database; "
            "choose one of the DATABASES aliases: 'default', 'other'",
        ),
    ],
)
def test_bad_options_are_command_errors_naming_the_option(args, options, message):
    seed(1)
    with pytest.raises(CommandError) as error:
        purge(*args, **options)
    assert message in str(error.value)
    assert len(keys()) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, "many"])
def test_a_bad_batch_size_setting_is_a_command_error_naming_the_setting(value):
    with (
        override_settings(IDEMPOTENCY_PURGE_BATCH_SIZE=value),
        pytest.raises(CommandError, match="IDEMPOTENCY_PURGE_BATCH_SIZE must be a positive"),
    ):
        purge()


@pytest.mark.django_db
def test_a_bad_clock_setting_is_a_command_error_naming_the_setting():
    with (
        override_settings(IDEMPOTENCY_CLOCK="tests.nowhere.clock"),
        pytest.raises(CommandError, match="IDEMPOTENCY_CLOCK"),
    ):
        call_command("purge_idempotency_keys", stdout=StringIO())


@pytest.fixture
def missing_database(django_db_blocker, tmp_path):
    """Add the alias ``missing``, a SQLite file in a directory that does not exist."""
    connections.settings["missing"] = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(tmp_path / "missing-directory" / "keys.sqlite3"),
        "OPTIONS": {},
    }
    with django_db_blocker.unblock():
        yield
    connections["missing"].close()
    del connections["missing"]
    del connections.settings["missing"]


def test_an_unreachable_database_is_a_command_error(missing_database):
    with pytest.raises(
        CommandError, match="Could not purge idempotency keys on database 'missing'"
    ):
        purge("--database", "missing")


@pytest.mark.django_db
def test_command_line_exits_zero_when_nothing_is_due(capsys):
    with FROZEN:
        execute_from_command_line(["manage.py", "purge_idempotency_keys"])
    captured = capsys.readouterr()
    assert captured.out == "No idempotency keys are due for purging.\n"
    assert captured.err == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--batch-size", "0"], 2, "argument --batch-size: must be a positive integer, not '0'"),
        (["--database", "nowhere"], 1, "CommandError: --database 'nowhere' is not a configured"),
    ],
)
def test_command_line_errors_print_one_message_and_no_traceback(capsys, argv, code, message):
    with pytest.raises(SystemExit) as exit_:
        execute_from_command_line(["manage.py", "purge_idempotency_keys", *argv])
    captured = capsys.readouterr()
    assert exit_.value.code == code
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_help_states_every_option_and_its_default(capsys):
    with pytest.raises(SystemExit):
        execute_from_command_line(["manage.py", "purge_idempotency_keys", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Can be run as a cron job" in text
    assert "--dry-run" in text
    assert "Default: IDEMPOTENCY_PURGE_BATCH_SIZE" in text
    assert "--database ALIAS" in text


def charges_scope():
    return signed_in_scope("POST", "api/charges")


def seed_fast(count, *, expires_at, prefix):
    """Insert ``count`` completed records with 1 KiB bodies in one PostgreSQL statement."""
    from django.db import connection

    table = connection.ops.quote_name(IdempotencyKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (scope, key, method, path, fingerprint, status, response_status,"
            " response_headers, response_body, created_at, completed_at, expires_at,"
            " lease_expires_at, fencing_token)"
            " SELECT %s, %s || n, 'POST', '/api/charges/', repeat('0', 64), 'completed', 201,"
            " '[[\"Content-Type\", \"application/json\"]]'::jsonb, convert_to(repeat('x', 1024), 'UTF8'),"
            " %s - interval '1 day', %s - interval '1 day', %s, NULL, 1"
            " FROM generate_series(1, %s) AS n",
            [charges_scope(), prefix, expires_at, expires_at, expires_at, count],
        )


ROWS = 60_000
BATCH = 500
CLIENT_THREADS = 3


def send(client, key):
    """POST one idempotent request; return ``(started, finished, status)`` in monotonic seconds."""
    started = time.monotonic()
    response = client.post(
        "/api/charges/", '{"amount": 1}', content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )
    return started, time.monotonic(), response.status_code


def client_thread(keys, results, stop=None):
    """Send a request per key until the keys run out or ``stop`` is set, on its own connection."""
    client = SignedInDjangoClient()
    try:
        for key in keys:
            if stop is not None and stop.is_set():
                break
            results.append((key, *send(client, key)))
    finally:
        connections.close_all()


def run_clients(key_lists, stop=None):
    results = []
    threads = [threading.Thread(target=client_thread, args=(k, results, stop)) for k in key_lists]
    for thread in threads:
        thread.start()
    return threads, results


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_wait_on_the_purge_for_longer_than_one_batch():
    """Requests that run during a purge wait at most for the batch in flight, never the purge.

    Half of the requests reuse keys of expired records that the purge is deleting. Such a request
    finds the record free and locks its row to take it over, so it waits for whichever purge
    transaction holds that row. With one transaction per batch it waits at most for the batch in
    flight; were the purge one long transaction (or were it to lock the table), every request for
    an already-deleted row would wait for the rest of the purge. So each request's duration is
    bounded by the slowest batch (timed between ``on_batch`` calls) plus the request's own time,
    taken from the slowest of the same requests sent without a purge, doubled, plus 0.5 s for a
    noisy machine. The purge must outlast that bound twice over, or the bound would not tell one
    batch from the whole purge.
    """
    # A sanity request: reusing an expired key takes over its row, so the scope matches.
    seed_fast(1, expires_at=django_timezone.now() - HOUR, prefix="probe-")
    _threads, probe = run_clients([["probe-1"]])
    _threads[0].join()
    assert probe[0][3] == 201
    assert IdempotencyKey.objects.filter(key="probe-1", scope=charges_scope()).count() == 1

    threads, baseline = run_clients(
        [[str(uuid.uuid4()) for _ in range(20)] for _thread in range(CLIENT_THREADS)]
    )
    for thread in threads:
        thread.join()
    own_time = max(finished - started for _key, started, finished, _status in baseline)

    seed_fast(ROWS, expires_at=django_timezone.now() - HOUR, prefix="due-")
    due = [f"due-{n}" for n in random.Random(7).sample(range(1, ROWS + 1), 3000)]
    key_lists = [
        [k for pair in zip(due[i::CLIENT_THREADS], _new_keys(), strict=False) for k in pair]
        for i in range(CLIENT_THREADS)
    ]
    stamps, errors = [], []

    def purge_thread():
        try:
            stamps.append(time.monotonic())
            IdempotencyKey.objects.purge_expired(
                batch_size=BATCH, on_batch=lambda _n: stamps.append(time.monotonic())
            )
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    stop = threading.Event()
    threads, results = run_clients(key_lists, stop)
    purger = threading.Thread(target=purge_thread)
    purger.start()
    purger.join()
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [status for *_rest, status in results if status != 201] == []
    purge_start, purge_end = stamps[0], stamps[-1]
    slowest_batch = max(b - a for a, b in itertools.pairwise(stamps))
    during = [r for r in results if r[1] < purge_end and r[2] > purge_start]
    reused = [key for key, *_rest in results if key.startswith("due-")]
    assert len(during) >= 20
    assert sum(key.startswith("due-") for key, *_rest in during) >= 10
    bound = slowest_batch + 2 * own_time + 0.5
    assert purge_end - purge_start > 2 * bound, "the purge was too short to test; raise ROWS"
    longest = max(finished - started for _key, started, finished, _status in during)
    assert longest <= bound, (longest, slowest_batch, own_time)
    # Every reused key now holds exactly its new, live record; every other due record is gone.
    assert IdempotencyKey.objects.filter(key__startswith="due-").count() == len(reused)
    assert set(
        IdempotencyKey.objects.filter(key__startswith="due-").values_list("key", flat=True)
    ) == set(reused)
    assert not IdempotencyKey.objects.expired(django_timezone.now()).filter(key__in=reused).exists()


def _new_keys():
    while True:
        yield str(uuid.uuid4())
