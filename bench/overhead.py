"""What the idempotency layer costs per request, through gunicorn, on PostgreSQL over loopback.

Usage (needs PostgreSQL on 127.0.0.1:5432; creates the database if it is missing):

    .venv/bin/python bench/overhead.py [--workers 4] [--threads 8] [--rounds 8] [--duration 2]

It serves the example project (``example.wsgi``, debug off, see ``overhead_settings.py``) with
gunicorn sync workers and drives it from this process with a pool of client threads (one HTTP
connection per request: gunicorn's sync workers close each one). Scenarios, against one server:

- plain:   ``POST /api/plain-charges/``, the charge create without idempotency;
- first:   ``POST /api/charges/`` (``IdempotentMixin``) with a new key per request;
- replay:  ``POST /api/charges/`` with keys that completed before, so every request replays;
- no key:  the same idempotent view with an optional key, sent without one.

Every request authenticates with the example's DRF token (authentication runs before a replay).
The machine is noisy, so each scenario is measured in rounds alternating with plain (ABBA order),
and the ratio is the median of the per-round ratios; "plain" against plain shows the noise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from postgres import create_database

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/idem_bench"
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
BODY = json.dumps({"amount": 1250, "currency": "EUR", "description": "bench"}).encode()
#: Goals: throughput ratio to plain that each scenario must reach.
GOALS = {"plain": None, "first": 0.90, "replay": 2.0, "no key": 0.95}

Request = tuple[str, list[tuple[str, str]]]


def environment(database_url: str) -> dict[str, str]:
    paths = [str(ROOT / "bench"), str(EXAMPLE), str(ROOT)]
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "overhead_settings",
        "PYTHONPATH": os.pathsep.join(paths),
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), *args],
        cwd=EXAMPLE,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout


TOKEN_SCRIPT = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user, _ = User.objects.get_or_create(username="bench")
print(Token.objects.get_or_create(user=user)[0].key)
"""


class Gunicorn:
    """gunicorn serving ``example.wsgi`` on an ephemeral loopback port."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "example.wsgi",
            "--bind=127.0.0.1:0",
            f"--workers={workers}",
            "--worker-class=sync",
            "--preload",
        ]
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=EXAMPLE, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while not (match := LISTENING.search(log.read_text(errors="replace"))):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        self.port = int(match.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def send(port: int, request: Request) -> tuple[int, float]:
    """POST ``request`` on a new connection; return the status and the latency in seconds."""
    path, headers = request
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, BODY, dict(headers))
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


@dataclass
class Round:
    """One timed burst of a scenario: how many requests completed, their latencies, failures."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


def burst(port: int, make: Callable[[], Request], threads: int, seconds: float) -> Round:
    """Send requests from ``threads`` threads for ``seconds``; return what completed."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < stop_at:
            status, latency = send(port, make())
            with lock:
                (latencies if status == 201 else failures).append(
                    latency if status == 201 else status
                )

    started = time.perf_counter()
    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return Round(time.perf_counter() - started, latencies, failures)


def scenarios(token: str, replay_keys: list[str]) -> dict[str, Callable[[], Request]]:
    auth = [("Authorization", f"Token {token}"), ("Content-Type", "application/json")]
    replays = iter(range(10**12))

    def keyed(key: str) -> list[tuple[str, str]]:
        return [*auth, ("Idempotency-Key", key)]

    return {
        "plain": lambda: ("/api/plain-charges/", auth),
        "first": lambda: ("/api/charges/", keyed(uuid.uuid4().hex)),
        "replay": lambda: ("/api/charges/", keyed(replay_keys[next(replays) % len(replay_keys)])),
        "no key": lambda: ("/bench/optional-key-charges/", auth),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0.0


def measure(port: int, made: dict[str, Callable[[], Request]], args: argparse.Namespace) -> None:
    plain = made["plain"]
    print(
        f"{'scenario':<8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'| plain':>7} {'req/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7}   ratio median [min-max]   goal"
    )
    for name, make in made.items():
        ours: list[Round] = []
        theirs: list[Round] = []
        for index in range(args.rounds):
            order = [(ours, make), (theirs, plain)]
            for target, maker in order if index % 2 == 0 else reversed(order):
                target.append(burst(port, maker, args.threads, args.duration))
        ratios = [a.throughput / b.throughput for a, b in zip(ours, theirs, strict=True)]
        failures = sum(len(r.failures) for r in ours + theirs)

        def summary(rounds: list[Round]) -> str:
            latencies = [x for r in rounds for x in r.latencies]
            rps = statistics.median(r.throughput for r in rounds)
            return (
                f"{rps:8.1f} {percentile(latencies, 0.5):7.1f} {percentile(latencies, 0.99):7.1f}"
            )

        goal = GOALS[name]
        verdict = "(noise)" if goal is None else f">= {goal:.2f}x"
        if goal is not None:
            verdict += "  met" if statistics.median(ratios) >= goal else "  MISSED"
        print(
            f"{name:<8} {summary(ours)} | {summary(theirs)}   {statistics.median(ratios):5.2f}x "
            f"[{min(ratios):.2f}-{max(ratios):.2f}]       {verdict}"
            + (f"  ({failures} non-201 answers)" if failures else ""),
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=8, help="paired rounds per scenario")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round")
    parser.add_argument("--replay-keys", type=int, default=300, help="completed keys replayed")
    args = parser.parse_args()

    env = environment(args.database_url)
    create_database(args.database_url)
    manage(env, "migrate", "--noinput", "-v", "0")
    token = manage(env, "shell", "-c", TOKEN_SCRIPT).strip().splitlines()[-1]
    with tempfile.TemporaryDirectory(prefix="idem-overhead-") as scratch:
        server = Gunicorn(env, args.workers, Path(scratch) / "gunicorn.log")
        try:
            auth = [("Authorization", f"Token {token}"), ("Content-Type", "application/json")]
            replay_keys = [f"replay-{uuid.uuid4().hex}" for _ in range(args.replay_keys)]
            for key in replay_keys:
                status, _ = send(server.port, ("/api/charges/", [*auth, ("Idempotency-Key", key)]))
                if status != 201:
                    sys.exit(f"setting up replays: got {status}; log:\n{server.log.read_text()}")
            made = scenarios(token, replay_keys)
            for make in made.values():  # warm every worker and code path up
                burst(server.port, make, args.threads, 0.5)
            cores = os.cpu_count()
            print(
                f"gunicorn {args.workers} sync workers, {args.threads} client threads, "
                f"{args.rounds} rounds x {args.duration:g} s per side, {cores} cores, "
                f"PostgreSQL {args.database_url.rsplit('@', 1)[-1]}\n"
            )
            measure(server.port, made, args)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
