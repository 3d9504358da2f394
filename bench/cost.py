"""What an idempotent request costs in CPU, against plain and against a hand-written floor.

Usage (PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306, Redis on 127.0.0.1:6379; the
databases ``idem_cost`` are created if missing):

    .venv/bin/python bench/cost.py --all                  # the whole matrix, 5 rounds x 200
    .venv/bin/python bench/cost.py --short                # every row, a few requests (CI)
    .venv/bin/python bench/cost.py --view toy --mode lease --store cache
    .venv/bin/python bench/cost.py --all --callgrind      # instructions per request instead
    .venv/bin/python bench/cost.py --all --package-root /tmp/idem_before   # another checkout

One gunicorn sync worker (``--workers 1``, debug off, persistent database connections) serves the
views of ``cost_views.py``; this process sends sequential requests over loopback. The cost of a
request is CPU time: the worker process, plus the database session that serves it (the
PostgreSQL backend process, or the MariaDB server thread of the worker's connection), plus
redis-server when the store is Redis, plus this process's sending thread. Each is read from
``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on CPU) before and after each burst.

Scenarios per view and mode: plain; first (a new key per request); replay (keys completed in
set-up); no key (the idempotent view without a header); the hand-written floor's first and
replay; and the ceiling (the same view class and authentication answering fixed bytes: what
every request shares, so plain ÷ ceiling bounds a replay's ratio). ``--round-trips`` adds plain
plus five ``SELECT 1``, the cost of one round trip inside a request. Each is measured in ``--rounds`` bursts, each paired with a plain burst in alternating
order (ABBA); a ratio is plain's cost divided by the scenario's, the median over the pairs.
``--callgrind`` runs the same requests in process (``django.test.Client``) under valgrind and
prints instructions per request instead. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
EXAMPLE = ROOT / "example_project"
DATABASES = {
    "postgresql": "postgres://postgres@127.0.0.1:5432/{name}",
    "mariadb": "mysql://root@127.0.0.1:3306/{name}",
}
REDIS_URL = "redis://127.0.0.1:6379/0"
VIEWS = ("toy", "realistic")
#: (mode, store) pairs measured, in the order they print.
MODES = (("atomic", "database"), ("lease", "database"), ("lease", "cache"))
#: The matrix ``--all`` runs: (mode, store, database).
MATRIX = (
    ("atomic", "database", "postgresql"),
    ("atomic", "database", "mariadb"),
    ("lease", "database", "postgresql"),
    ("lease", "cache", "postgresql"),
)
SCENARIOS = ("plain", "first", "replay", "no key", "floor first", "floor replay", "ceiling")
TRIPS = "plain + 5 SELECT 1"
REPLAYED = "Idempotent-Replayed"
#: The issue's goals, ratio plain ÷ scenario; MariaDB is held to PostgreSQL's.
GOALS: dict[tuple[str, str, str], dict[str, float]] = {
    ("toy", "atomic", "database"): {"first": 0.80, "replay": 1.45, "no key": 0.99},
    ("realistic", "atomic", "database"): {"first": 0.85, "replay": 2.2, "no key": 0.99},
    ("toy", "lease", "cache"): {"first": 0.90, "replay": 1.45, "no key": 0.99},
}
BODIES = {
    "toy": {"amount": 1250, "currency": "EUR", "description": "bench"},
    "realistic": {
        "amount": 1250,
        "currency": "EUR",
        "reference": "bench-transfer",
        "description": "bench",
    },
}
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")

Request = tuple[str, dict[str, str]]
#: Per (block, scenario): instructions per request; per (block, scenario, "trips"): round trips.
Counts = dict[tuple[Any, ...], Any]


@dataclass(frozen=True)
class Block:
    """One table: a view in one mode, on one store and database."""

    view: str
    mode: str
    store: str
    database: str

    @property
    def title(self) -> str:
        names = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}
        store = "Redis store" if self.store == "cache" else "database store"
        return f"{self.view} view, {self.mode}, {store}, {names[self.database]}"

    def path(self, form: str) -> str:
        if form in ("plain", "ceiling", "trips"):
            return f"/cost/{self.view}/{form}/"
        prefix = "floor-" if form == "floor" else ""
        return f"/cost/{self.view}/{prefix}{self.mode}-{self.store}/"

    @property
    def goals(self) -> dict[str, float]:
        return GOALS.get((self.view, self.mode, self.store), {})


# Set-up -----------------------------------------------------------------------------------------


def database_name(package_root: Path, override: str | None) -> str:
    """``idem_cost`` for this checkout's package; another checkout gets its own database."""
    if override:
        return override
    if package_root == ROOT:
        return "idem_cost"
    return "idem_cost_" + re.sub(r"[^a-z0-9]+", "_", package_root.name.lower()).strip("_")


def create_database(url: str) -> None:
    """Create the database ``url`` names unless it exists (the server's default charset)."""
    if url.startswith("postgres"):
        from postgres import create_database as create_postgres

        create_postgres(url)
        return
    import dj_database_url
    import pymysql

    config = dj_database_url.parse(url)
    admin = pymysql.connect(
        host=config["HOST"], port=int(config["PORT"] or 3306), user=config["USER"], password=""
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{config['NAME']}`")
    finally:
        admin.close()


def environment(database_url: str, package_root: Path) -> dict[str, str]:
    """The environment of the worker and of every helper: ``package_root`` comes first."""
    paths = [str(package_root), str(BENCH), str(EXAMPLE), str(ROOT)]
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "cost_settings",
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONHASHSEED": "0",
    }


SETUP_SCRIPT = """
import json
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from costapp.models import Account, Rate
user = User.objects.create_user(username="cost-bench")
account = Account.objects.create(owner=user, currency="EUR")
Rate.objects.create(currency="EUR", minimum=1)
print(json.dumps({"token": Token.objects.create(user=user).key, "account": account.pk}))
"""


def prepare(env: dict[str, str]) -> dict[str, Any]:
    """Migrate, empty every table, and create the bench user, its token and its account."""
    from overhead import manage

    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "flush", "--noinput", "-v", "0")
    found: dict[str, Any] = json.loads(manage(env, "shell", "-c", SETUP_SCRIPT).splitlines()[-1])
    return found


def clear_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(match="idem-cost*", count=1000):
        client.delete(name)


# CPU attribution --------------------------------------------------------------------------------


def cpu_ns(pid: int, tid: int | None = None) -> int:
    """Nanoseconds on CPU of ``pid``'s thread ``tid``, or of all its threads."""
    tasks = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:  # a thread that ended
            continue
    return total


def find_process(*names: str) -> int:
    """The pid of the process whose command name is one of ``names``."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() in names:
                        return int(entry)
            except OSError:
                continue
    raise SystemExit(f"no {' or '.join(names)} process on this machine")


@dataclass
class Targets:
    """What is read per burst: a name -> a function returning nanoseconds on CPU."""

    readers: dict[str, Callable[[], int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The worker's pid and database session, which must not change during a block.
    identity: tuple[int, Any] = (0, None)

    def read(self) -> dict[str, int]:
        return {name: reader() for name, reader in self.readers.items()}


# HTTP -------------------------------------------------------------------------------------------


class Server:
    """One gunicorn sync worker serving ``cost_settings`` for one database."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        from overhead import Gunicorn

        self.gunicorn = Gunicorn(env, 1, log)
        self.port = self.gunicorn.port
        self.log = log

    def get(self, path: str) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status}\n{self.log.read_text(errors='replace')}")
        found: dict[str, Any] = json.loads(body)
        return found

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bool]:
        """POST on a new connection (a sync worker closes each); return status and replayed."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            return response.status, response.getheader(REPLAYED) == "true"
        finally:
            connection.close()

    def stop(self) -> None:
        self.gunicorn.stop()


def targets_for(server: Server, database: str, store: str) -> Targets:
    """Find the worker, its database session and (for the cache store) redis-server."""
    probe = server.get("/cost/probe/")
    worker = int(probe["pid"])
    found = Targets()
    found.readers["worker"] = lambda: cpu_ns(worker)
    if database == "postgresql":
        backend = int(probe["session"])
        found.readers["backend"] = lambda: cpu_ns(backend)
        found.notes.append(f"PostgreSQL backend pid {backend}")
    else:
        server_pid = find_process("mariadbd", "mysqld")
        threads = [int(t) for t in os.listdir(f"/proc/{server_pid}/task")]
        before = {t: cpu_ns(server_pid, t) for t in threads}
        server.get("/cost/probe/?burn=400000")  # busy work on the worker's own session
        deltas = {t: cpu_ns(server_pid, t) - before[t] for t in threads}
        thread = max(deltas, key=lambda t: deltas[t])
        share = deltas[thread] / max(1, sum(deltas.values()))
        if share < 0.8:
            sys.exit(f"could not tell the MariaDB thread of the worker's session apart: {deltas}")
        found.readers["backend"] = lambda: cpu_ns(server_pid, thread)
        found.readers["server other"] = lambda: cpu_ns(server_pid) - cpu_ns(server_pid, thread)
        found.notes.append(
            f"MariaDB server thread {thread} of pid {server_pid} (connection {probe['session']}, "
            "found by the CPU of a BENCHMARK() on it); the server's other threads are shown "
            "apart and not counted"
        )
    if store == "cache":
        import redis

        redis_pid = int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])
        found.readers["redis"] = lambda: cpu_ns(redis_pid)
        found.notes.append(f"redis-server pid {redis_pid}, all its threads")
    found.identity = (worker, probe["session"])
    return found


@dataclass
class Sample:
    """One burst: nanoseconds on CPU per target, for ``requests`` requests."""

    requests: int
    ns: dict[str, int]

    def us(self, name: str) -> float:
        return self.ns.get(name, 0) / self.requests / 1000

    @property
    def total(self) -> float:
        counted = ("worker", "backend", "redis", "client")
        return sum(self.us(name) for name in counted)


def round_trips(server: Server, targets: Targets, store: str) -> str:
    """What one trivial round trip costs through this worker: ``SELECT 1``, a Redis GET."""
    count = 1000
    found = []
    kinds = [("statements", "backend", "one SELECT 1 through Django's cursor")]
    if store == "cache":
        kinds.append(("redis", "redis", "one Redis GET through django-redis's client"))
    for parameter, server_side, label in kinds:
        spent = []
        for n in (0, count):
            time.sleep(0.01)
            before = targets.read()
            server.get(f"/cost/probe/?{parameter}={n}")
            time.sleep(0.01)
            after = targets.read()
            spent.append({k: after[k] - before[k] for k in ("worker", server_side)})
        worker, other = (
            (spent[1][k] - spent[0][k]) / count / 1000 for k in ("worker", server_side)
        )
        found.append(
            f"{label}: worker {worker:.0f} + {server_side} {other:.0f} = {worker + other:.0f} µs"
        )
    return "; ".join(found)


def burst(
    server: Server, targets: Targets, requests: list[Request], body: bytes, kind: str
) -> Sample:
    """Send ``requests`` one after another; return the CPU each target spent on them."""
    time.sleep(0.01)  # let the worker finish the previous request's tail
    before = targets.read()
    started = time.thread_time_ns()
    for path, headers in requests:
        status, replayed = server.post(path, body, headers)
        if status != 201 or replayed != kind.endswith("replay"):
            sys.exit(
                f"{kind}: POST {path} answered {status} (replayed: {replayed})\n"
                f"{server.log.read_text(errors='replace')[-3000:]}"
            )
    client = time.thread_time_ns() - started
    time.sleep(0.01)
    after = targets.read()
    ns = {name: after[name] - before[name] for name in after}
    ns["client"] = client
    return Sample(len(requests), ns)


# Scenarios --------------------------------------------------------------------------------------


def headers(token: str, key: str | None = None) -> dict[str, str]:
    found = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    if key is not None:
        found["Idempotency-Key"] = key
    return found


def body_of(view: str, account: int) -> bytes:
    data = dict(BODIES[view])
    if view == "realistic":
        data["account"] = account
    return json.dumps(data).encode()


class Requests:
    """Makes each scenario's requests; owns the keys completed in set-up."""

    def __init__(self, block: Block, token: str, count: int) -> None:
        self.block = block
        self.token = token
        self.count = count
        tag = uuid.uuid4().hex[:8]
        self.replay_keys = {
            form: [f"replay-{tag}-{form}-{n}" for n in range(count)]
            for form in ("library", "floor")
        }

    def make(self, scenario: str, count: int | None = None) -> list[Request]:
        block, count = self.block, count or self.count
        form = "floor" if scenario.startswith("floor") else "library"
        if scenario in ("plain", "ceiling"):
            return [(block.path(scenario), headers(self.token))] * count
        if scenario == TRIPS:
            return [(block.path("trips"), headers(self.token))] * count
        if scenario == "no key":
            return [(block.path("library"), headers(self.token))] * count
        if scenario.endswith("first"):
            return [(block.path(form), headers(self.token, uuid.uuid4().hex)) for _ in range(count)]
        keys = self.replay_keys[form]
        return [(block.path(form), headers(self.token, keys[n % len(keys)])) for n in range(count)]

    def seeds(self) -> list[tuple[str, list[Request]]]:
        """The first executions that complete the replay keys."""
        return [
            (
                f"{form} seed",
                [
                    (self.block.path(form), headers(self.token, key))
                    for key in self.replay_keys[form]
                ],
            )
            for form in ("library", "floor")
        ]


@dataclass
class Result:
    block: Block
    samples: dict[str, list[Sample]]
    plains: dict[str, list[Sample]]
    notes: list[str]

    def median(self, scenario: str, name: str) -> float:
        return statistics.median(s.us(name) for s in self.samples[scenario])

    def total(self, scenario: str) -> float:
        return statistics.median(s.total for s in self.samples[scenario])

    def ratios(self, scenario: str) -> list[float]:
        pairs = zip(self.plains[scenario], self.samples[scenario], strict=True)
        return [plain.total / ours.total for plain, ours in pairs]


def measure_block(
    server: Server, block: Block, setup: dict[str, Any], args: argparse.Namespace
) -> Result:
    targets = targets_for(server, block.database, block.store)
    body = body_of(block.view, setup["account"])
    made = Requests(block, setup["token"], args.requests)
    for kind, requests in made.seeds():
        burst(server, targets, requests, body, kind)
    for scenario in SCENARIOS:  # warm every code path up
        burst(server, targets, made.make(scenario, args.warmup), body, scenario)
    samples: dict[str, list[Sample]] = {s: [] for s in SCENARIOS}
    plains: dict[str, list[Sample]] = {s: [] for s in SCENARIOS}
    for index in range(args.rounds):
        for scenario in SCENARIOS:
            pair = [(samples, scenario), (plains, "plain")]
            for target, kind in pair if index % 2 == 0 else reversed(pair):
                target[scenario].append(burst(server, targets, made.make(kind), body, kind))
    targets.notes.append(round_trips(server, targets, block.store))
    probe = server.get("/cost/probe/")
    if (int(probe["pid"]), probe["session"]) != targets.identity:
        sys.exit(f"{block.title}: the worker or its database session changed during the block")
    return Result(block, samples, plains, targets.notes)


# Output -----------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.2f}"
    return f"{median:.2f} [{min(values):.2f}–{max(values):.2f}]"


def report(result: Result, args: argparse.Namespace) -> None:
    block = result.block
    extra = "server other" in result.samples["plain"][0].ns
    redis = block.store == "cache"
    print(f"\n### {block.title}\n")
    print(f"{args.rounds} rounds × {args.requests} requests; CPU µs per request (medians)\n")
    columns = ["scenario", "worker", "backend"] + (["redis"] if redis else [])
    columns += ["client", "total", "plain ÷ scenario", "goal"]
    if extra:
        columns.append("other mariadbd threads (not counted)")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if n == 0 else "---:" for n in range(len(columns))) + "|")
    for scenario in SCENARIOS:
        goal = block.goals.get(scenario)
        ratios = result.ratios(scenario)
        verdict = "noise" if scenario == "plain" else ""
        if goal is not None:
            verdict = f"≥ {goal:.2f}: " + (
                "met" if statistics.median(ratios) >= goal else "**missed**"
            )
        cells = [scenario if scenario != "plain" else "plain (vs plain)"]
        for name in ("worker", "backend") + (("redis",) if redis else ()) + ("client",):
            cells.append(f"{result.median(scenario, name):,.0f}")
        cells += [f"{result.total(scenario):,.0f}", spread(ratios), verdict]
        if extra:
            cells.append(f"{result.median(scenario, 'server other'):,.0f}")
        print("| " + " | ".join(cells) + " |")
    first, floor_first = result.total("first"), result.total("floor first")
    replay, floor_replay = result.total("replay"), result.total("floor replay")
    print(
        f"\nlibrary ÷ floor (cost): first {first / floor_first:.2f}×, replay "
        f"{replay / floor_replay:.2f}×; above the floor: first {first - floor_first:+,.0f} µs, "
        f"replay {replay - floor_replay:+,.0f} µs"
    )
    if TRIPS in result.samples:
        parts = {
            name: (result.median(TRIPS, name) - result.median("plain", name)) / 5
            for name in ("worker", "backend")
        }
        print(
            f"one round trip inside a request ((plain + 5 SELECT 1 − plain) ÷ 5): "
            f"{(result.total(TRIPS) - result.total('plain')) / 5:.0f} µs (worker "
            f"{parts['worker']:.0f}, backend {parts['backend']:.0f})"
        )
    for note in result.notes:
        print(f"- {note}")
    sys.stdout.flush()


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load} ({time.strftime('%H:%M:%S', time.gmtime())} UTC)"


def summary(result: Result) -> tuple[Block, dict[str, float], float, float]:
    ratios = {s: statistics.median(result.ratios(s)) for s in SCENARIOS}
    first = result.total("first") / result.total("floor first")
    replay = result.total("replay") / result.total("floor replay")
    return result.block, ratios, first, replay


def report_summary(rows: list[tuple[Block, dict[str, float], float, float]], kind: str) -> None:
    """One line per table: plain ÷ scenario for the library and the floor, library ÷ floor."""
    print(f"\n### Summary ({kind}): plain ÷ scenario; library ÷ floor\n")
    head = ["view, mode, store, database", *SCENARIOS[1:], "library ÷ floor: first", "replay"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for block, ratios, first, replay in rows:
        cells = []
        for scenario in SCENARIOS[1:]:
            goal = block.goals.get(scenario)
            mark = (
                "" if goal is None else (" ✓" if ratios[scenario] >= goal else f" (goal {goal:g})")
            )
            cells.append(f"{ratios[scenario]:.2f}{mark}")
        print(f"| {block.title} | " + " | ".join(cells) + f" | {first:.2f} | {replay:.2f} |")


# Callgrind --------------------------------------------------------------------------------------


def inprocess(blocks: list[Block], args: argparse.Namespace) -> int:
    """The child under valgrind: the same requests through ``django.test.Client``.

    Before each measured scenario it calls ``os.getppid()`` (callgrind zeroes its counters) and
    after it ``os.getpgrp()`` (callgrind dumps them), so each dump holds one scenario's requests.
    """
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework.authtoken.models import Token

    user = User.objects.get(username="cost-bench")
    token = Token.objects.get(user=user).key
    account = user.cost_account.pk
    client = Client(HTTP_HOST="127.0.0.1")  # the example allows local host names only
    order = []
    for block in blocks:
        body = body_of(block.view, account)
        made = Requests(block, token, args.requests)

        def send(requests: Iterable[Request], kind: str, body: bytes = body) -> None:
            for path, sent in requests:
                extra = {k: v for k, v in sent.items() if k != "Content-Type"}
                response = client.post(path, body, content_type="application/json", headers=extra)
                replayed = response.headers.get(REPLAYED) == "true"
                if response.status_code != 201 or replayed != kind.endswith("replay"):
                    raise SystemExit(f"{kind}: {path} {response.status_code} {response.content!r}")

        for kind, requests in made.seeds():
            send(requests, kind)
        for scenario in SCENARIOS:
            send(made.make(scenario, args.warmup), scenario)
        for scenario in SCENARIOS:
            requests = made.make(scenario)
            # A full collection lands in whichever scenario crosses its threshold: collect now and
            # freeze what survives, so each count holds only its own requests' collections.
            gc.collect()
            gc.freeze()
            os.getppid()
            send(requests, scenario)
            os.getpgrp()
            order.append({"block": block.__dict__, "scenario": scenario})
        for entry in order[-len(SCENARIOS) :]:  # round trips, outside the counted stretches
            scenario = entry["scenario"]
            entry.update(round_trips_of(send, made.make(scenario, 1), scenario))
    import django_idempotency

    print(json.dumps({"package": os.path.dirname(django_idempotency.__file__), "order": order}))
    return 0


def round_trips_of(
    send: Callable[[Iterable[Request], str], None], requests: list[Request], kind: str
) -> dict[str, int]:
    """The SQL statements (BEGIN and COMMIT included) and Redis commands of one request."""
    import redis
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    stats = redis.Redis.from_url(REDIS_URL)
    before = int(stats.info("stats")["total_commands_processed"])
    with CaptureQueriesContext(connection) as queries:
        send(requests, kind)
    # The first INFO is counted once it has answered: one command more than the request sent.
    commands = int(stats.info("stats")["total_commands_processed"]) - before - 1
    return {"statements": len(queries.captured_queries), "redis": commands}


def callgrind(
    database: str, blocks: list[Block], env: dict[str, str], args: argparse.Namespace
) -> Counts:
    """Run ``blocks`` in process under callgrind; return instructions per request."""
    with tempfile.TemporaryDirectory(prefix="idem-cost-cg-") as scratch:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={scratch}/cg.%p",
            "--zero-before=os_getppid",
            "--dump-before=os_getpgrp",
            sys.executable,
            str(Path(__file__).resolve()),
            "--inprocess",
            "--database",
            database,
            "--requests",
            str(args.requests),
            "--warmup",
            str(args.warmup),
            *(["--round-trips"] if args.round_trips else []),
            "--blocks",
            json.dumps([block.__dict__ for block in blocks]),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"callgrind run failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        reported = json.loads(done.stdout.strip().splitlines()[-1])
        if (
            Path(reported["package"]).resolve()
            != args.package_root.resolve() / "django_idempotency"
        ):
            sys.exit(f"the callgrind run imported {reported['package']}")
        order = reported["order"]
        dumps = sorted(
            (p for p in Path(scratch).iterdir() if re.fullmatch(r"cg\.\d+\.\d+", p.name)),
            key=lambda p: int(p.name.rsplit(".", 1)[1]),
        )
        if len(dumps) != len(order):
            sys.exit(f"expected {len(order)} callgrind dumps, found {len(dumps)}")
        found: Counts = {}
        for entry, dump in zip(order, dumps, strict=True):
            match = re.search(r"^summary: (\d+)", dump.read_text(), re.MULTILINE)
            if match is None:
                sys.exit(f"no summary in {dump}")
            block, scenario = Block(**entry["block"]), entry["scenario"]
            found[block, scenario] = int(match.group(1)) / args.requests
            found[block, scenario, "trips"] = (entry["statements"], entry["redis"])
        return found


def summary_callgrind(block: Block, counts: Counts) -> tuple[Block, dict[str, float], float, float]:
    ratios = {s: counts[block, "plain"] / counts[block, s] for s in SCENARIOS}
    first = counts[block, "first"] / counts[block, "floor first"]
    replay = counts[block, "replay"] / counts[block, "floor replay"]
    return block, ratios, first, replay


def report_callgrind(block: Block, counts: Counts) -> None:
    plain = counts[block, "plain"]
    print(f"\n### {block.title}: instructions per request (callgrind, in process)\n")
    redis = block.store == "cache"
    head = "| scenario | instructions | plain ÷ scenario | goal | SQL statements"
    print(head + (" | Redis commands |" if redis else " |"))
    print("|---|---:|---:|---|---:|" + ("---:|" if redis else ""))
    for scenario in SCENARIOS:
        goal = block.goals.get(scenario)
        ratio = plain / counts[block, scenario]
        verdict = (
            "" if goal is None else f"≥ {goal:.2f}: " + ("met" if ratio >= goal else "**missed**")
        )
        statements, commands = counts[block, scenario, "trips"]
        print(
            f"| {scenario} | {counts[block, scenario]:,.0f} | {ratio:.2f} | {verdict} | "
            f"{statements} |" + (f" {commands} |" if redis else "")
        )
    first, floor_first = counts[block, "first"], counts[block, "floor first"]
    replay, floor_replay = counts[block, "replay"], counts[block, "floor replay"]
    print(
        f"\nlibrary ÷ floor (instructions): first {first / floor_first:.2f}×, "
        f"replay {replay / floor_replay:.2f}×"
    )
    if (block, TRIPS) in counts:
        trip = (counts[block, TRIPS] - plain) / 5
        print(f"one SELECT 1 inside a request: {trip:,.0f} instructions")
    sys.stdout.flush()


# Main -------------------------------------------------------------------------------------------


def selected(args: argparse.Namespace) -> list[Block]:
    if args.blocks:
        return [Block(**entry) for entry in json.loads(args.blocks)]
    views = VIEWS if args.view is None else (args.view,)
    if args.all or args.short:
        return [Block(v, m, s, d) for v in views for m, s, d in MATRIX]
    mode = args.mode or "atomic"
    store = args.store or "database"
    if (mode, store) not in MODES:
        sys.exit(f"--mode {mode} --store {store}: atomic mode needs the database store")
    databases = (args.database,) if args.database else ("postgresql",)
    return [Block(v, mode, store, d) for v in views for d in databases]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=sorted(DATABASES))
    parser.add_argument("--mode", choices=["atomic", "lease"])
    parser.add_argument("--store", choices=["database", "cache"])
    parser.add_argument("--view", choices=VIEWS)
    parser.add_argument("--requests", type=int, help="requests per burst (200; --callgrind 30)")
    parser.add_argument("--rounds", type=int, default=5, help="paired bursts per scenario (5)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per scenario (40)")
    parser.add_argument("--all", action="store_true", help="every view, mode, store, database")
    parser.add_argument("--short", action="store_true", help="every row, few requests (CI)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    parser.add_argument(
        "--round-trips",
        action="store_true",
        help="also measure plain plus five SELECT 1: one round trip's cost inside a request",
    )
    parser.add_argument(
        "--package-root",
        type=Path,
        default=ROOT,
        help="the directory holding the django_idempotency package measured (this checkout)",
    )
    parser.add_argument("--database-name", help="default: idem_cost (or idem_cost_<root name>)")
    parser.add_argument("--inprocess", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--blocks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round_trips:
        global SCENARIOS
        SCENARIOS = (*SCENARIOS, TRIPS)
    if args.short:
        GOALS.clear()  # one pair of ten requests is a smoke test, not a figure to judge
        args.rounds = 1
        args.requests = args.requests or 10
        args.warmup = args.warmup or 5
    args.requests = args.requests or (30 if args.callgrind else 200)
    args.warmup = args.warmup or (10 if args.callgrind else 40)
    blocks = selected(args)
    if args.inprocess:
        return inprocess(blocks, args)

    root = args.package_root.resolve()
    if not (root / "django_idempotency" / "__init__.py").is_file():
        sys.exit(f"--package-root {root}: no django_idempotency package there")
    name = database_name(root, args.database_name)
    kind = "instructions (callgrind)" if args.callgrind else "CPU per request"
    print(f"# bench/cost.py: {kind}, package {root}/django_idempotency\n\n{machine()}")
    if args.short:
        print("--short: one pair of bursts per scenario; the ratios are noise, not figures")
    clear_redis()
    rows: list[tuple[Block, dict[str, float], float, float]] = []
    for database in dict.fromkeys(block.database for block in blocks):
        url = DATABASES[database].format(name=name)
        env = environment(url, root)
        create_database(url)
        setup = prepare(env)
        mine = [block for block in blocks if block.database == database]
        if args.callgrind:
            counts = callgrind(database, mine, env, args)
            for block in mine:
                report_callgrind(block, counts)
                rows.append(summary_callgrind(block, counts))
            continue
        with tempfile.TemporaryDirectory(prefix="idem-cost-") as scratch:
            server = Server(env, Path(scratch) / "gunicorn.log")
            try:
                package = server.get("/cost/probe/")["package"]
                if Path(package).resolve() != root / "django_idempotency":
                    sys.exit(f"the worker imported {package}, not {root}/django_idempotency")
                for block in mine:
                    result = measure_block(server, block, setup, args)
                    report(result, args)
                    rows.append(summary(result))
            finally:
                server.stop()
    clear_redis()
    report_summary(rows, kind)
    print(f"\n{machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
