"""The example project stays runnable, its endpoints behave, and the retry-storm demo passes.

The example has its own settings and apps, so it runs in its own processes here: ``manage.py``
commands, its own test suite (``manage.py test``, Django's test client against every endpoint),
and a real server on SQLite that ``retry_storm`` fires at over HTTP.
"""

from __future__ import annotations

import os
import re
import runpy
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
SETTINGS = EXAMPLE / "example" / "settings.py"


def example_env(database: Path) -> dict[str, str]:
    """Return the environment for the example's processes: its own settings, this SQLite file."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONUNBUFFERED": "1"}
    for name in ("DJANGO_SETTINGS_MODULE", "REDIS_URL"):
        env.pop(name, None)
    return env


def manage(*command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``manage.py`` in the example project and return the finished process."""
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "command",
    [["check", "--fail-level", "WARNING"], ["makemigrations", "--check", "--dry-run"]],
    ids=["check", "migrations-current"],
)
def test_manage_py(tmp_path, command):
    done = manage(*command, env=example_env(tmp_path / "example.sqlite3"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def example_database(tmp_path_factory):
    """Return a SQLite file the example's ``migrate`` set up, as the run command does."""
    database = tmp_path_factory.mktemp("example") / "example.sqlite3"
    done = manage("migrate", "--noinput", env=example_env(database))
    assert done.returncode == 0, done.stdout + done.stderr
    return database


def test_migrate_creates_every_table(example_database):
    with sqlite3.connect(example_database) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    expected = {
        "payments_charge",
        "payments_refund",
        "payments_payout",
        "payments_payoutevent",
        "django_idempotency_idempotencykey",
        "authtoken_token",
        "django_session",
    }
    assert expected <= tables


def load_settings(monkeypatch, **env: str) -> dict[str, object]:
    """Return the example's settings module, as loaded with these environment variables."""
    for name in ("DATABASE_URL", "REDIS_URL", "PROVIDER_FAILURE_RATE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_settings_default_to_sqlite_and_the_database_store(monkeypatch):
    settings = load_settings(monkeypatch)
    database = settings["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(database["NAME"]) == EXAMPLE / "db.sqlite3"
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert settings["PAYMENTS_IDEMPOTENCY_STORE"] == "database"
    assert "CACHES" not in settings
    assert not settings.get("ATOMIC_REQUESTS", False) and "ATOMIC_REQUESTS" not in database


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("postgres://demo@localhost:5432/demo", "django.db.backends.postgresql"),
        ("mysql://demo@localhost:3306/demo", "django.db.backends.mysql"),
    ],
)
def test_database_url_switches_the_database(monkeypatch, url, engine):
    database = load_settings(monkeypatch, DATABASE_URL=url)["DATABASES"]["default"]
    assert database["ENGINE"] == engine
    assert database["NAME"] == "demo"
    assert "transaction_mode" not in database.get("OPTIONS", {})
    if engine.endswith("mysql"):
        assert database["OPTIONS"]["charset"] == "utf8mb4"


def test_redis_url_turns_on_the_redis_store(monkeypatch):
    settings = load_settings(monkeypatch, REDIS_URL="redis://127.0.0.1:6379/3")
    assert settings["CACHES"]["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    assert settings["CACHES"]["default"]["LOCATION"] == "redis://127.0.0.1:6379/3"
    assert settings["PAYMENTS_IDEMPOTENCY_STORE"] == "cache"


def test_a_bad_provider_setting_names_the_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="PROVIDER_FAILURE_RATE is 'often'"):
        load_settings(monkeypatch, PROVIDER_FAILURE_RATE="often")


def test_the_example_test_suite_passes(tmp_path):
    """Every endpoint through Django's test client (first, replay, mismatch), and setup_demo."""
    done = manage("test", "--noinput", env=example_env(tmp_path / "unused.sqlite3"), timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    ran = re.search(r"Ran (\d+) tests", output)
    assert ran is not None and int(ran.group(1)) >= 20, output


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> None:
    """Return once ``url`` answers over HTTP; fail when the server dies or 60 s pass."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"runserver exited with {server.returncode}:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"runserver did not answer at {url} within 60 s:\n{log.read_text()}")


def test_retry_storm_against_the_running_example(tmp_path, example_database):
    """The README's demo, as a new user runs it: exactly one charge or payout per key."""
    database = example_database
    # A shorter slow payout than the interactive demo's keeps the test quick.
    env = {**example_env(database), "PROVIDER_SLOW_DELAY": "1.0"}
    done = manage("setup_demo", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    base_url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "runserver.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", base_url.split("//")[1]],
            cwd=EXAMPLE,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(f"{base_url}/api/", server, log)
        storm = manage(
            "retry_storm", f"--base-url={base_url}", "--timeout=0.3", env=env, timeout=120
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    report = storm.stdout + storm.stderr + "\n--- server log ---\n" + log.read_text()
    assert storm.returncode == 0, report
    assert "All 7 scenarios behaved as expected." in storm.stdout, report
    assert f"{base_url}/admin/django_idempotency/idempotencykey/?q=storm-" in storm.stdout

    # Count in the database itself, not through the API the demo already trusted.
    with sqlite3.connect(database) as db:
        charges = dict(
            db.execute(
                "SELECT description || ' / ' || owner_id, COUNT(*) FROM payments_charge "
                "WHERE description LIKE 'retry storm %' GROUP BY 1"
            ).fetchall()
        )
        payouts = db.execute(
            "SELECT description, COUNT(*) FROM payments_payout GROUP BY description"
        ).fetchall()
        events = db.execute("SELECT COUNT(*) FROM payments_payoutevent").fetchone()[0]
    per_key = {name.split(": ", 1)[1]: count for name, count in charges.items()}
    # "<scenario> / <owner id>": the contrast made 10 charges, every keyed request one per user.
    assert {name.split(" / ")[0]: count for name, count in per_key.items()} == {
        "no key": 10,
        "concurrent": 1,
        "mismatch": 1,
        "two users": 1,
    }, charges
    assert len([name for name in per_key if name.startswith("two users")]) == 2, charges
    assert [count for _, count in payouts] == [1, 1], payouts
    assert events == 1
