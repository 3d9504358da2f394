"""Set up a virtualenv and run the example project, the test suite, or the lint gates.

Needs only Python 3.10+ (standard library); everything else is installed into ./.venv from
pyproject.toml's dependency groups.

    python3 scripts/dev.py example              # the example project on SQLite, at http://127.0.0.1:8000/
    python3 scripts/dev.py test                 # SQLite always; PostgreSQL, MariaDB, Redis when reachable
    python3 scripts/dev.py test --require-all   # CI: a database that is not reachable fails the run
    python3 scripts/dev.py lint                 # ruff, ruff format, mypy --strict, makemigrations --check
    python3 scripts/dev.py docs                 # the documentation site, built with --strict
    python3 scripts/dev.py package              # sdist and wheel into ./dist, then twine check
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"

SERVICES = {
    "postgresql": os.environ.get(
        "POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/django_idempotency"
    ),
    "mariadb": os.environ.get("MARIADB_URL", "mysql://root@127.0.0.1:3306/django_idempotency"),
}
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

PROBES = {
    "postgresql": "import psycopg; psycopg.connect('host=127.0.0.1 port={port} user={user} dbname=postgres', connect_timeout=3).close()",
    "mariadb": "import pymysql; pymysql.connect(host='127.0.0.1', port={port}, user='{user}', password='', connect_timeout=3).close()",
}
HOW_TO_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    example = commands.add_parser("example", help="set up and run the example project")
    example.add_argument("--port", default="8000")
    test = commands.add_parser(
        "test", help="set up and run the whole test suite on every reachable database"
    )
    test.add_argument(
        "--require-all",
        action="store_true",
        help="fail when PostgreSQL, MariaDB or Redis is unreachable",
    )
    test.add_argument("--only", help="comma-separated subset of: sqlite,postgresql,mariadb")
    commands.add_parser(
        "lint", help="ruff, ruff format --check, mypy --strict, makemigrations --check"
    )
    commands.add_parser("docs", help="build the documentation site strictly into ./site")
    commands.add_parser("package", help="build the sdist and wheel into ./dist; twine check")
    args, extra = parser.parse_known_args()
    if args.command == "example":
        return run_example(args.port)
    if args.command == "lint":
        return run_lint()
    if args.command == "docs":
        return run_docs()
    if args.command == "package":
        return run_package()
    return run_tests(require_all=args.require_all, only=args.only, pytest_args=extra)


def ensure_venv(group: str) -> None:
    """Create ./.venv and install the package with ``group`` unless pyproject.toml is unchanged."""
    if not PYTHON.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    stamp = VENV / f".installed-{group}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(
        f"Installing django-idempotency and the '{group}' dependency group into {VENV} ...",
        flush=True,
    )
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # Dependency groups (PEP 735) need pip 25.1 or newer.
    subprocess.run([*pip, "--upgrade", "pip>=25.1"], check=True)
    subprocess.run([*pip, "--editable", ".", "--group", group], cwd=ROOT, check=True)
    stamp.write_text(digest)


def run_example(port: str) -> int:
    ensure_venv("example")
    project = ROOT / "example_project"
    manage = [str(PYTHON), "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=project, check=True)
    subprocess.run(
        [*manage, "setup_demo", f"--base-url=http://127.0.0.1:{port}"], cwd=project, check=True
    )
    return subprocess.call([*manage, "runserver", f"127.0.0.1:{port}"], cwd=project)


def run_lint() -> int:
    ensure_venv("lint")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    gates = [
        ("ruff check", [str(BIN / "ruff"), "check", "."]),
        ("ruff format", [str(BIN / "ruff"), "format", "--check", "."]),
        ("mypy --strict", [str(BIN / "mypy")]),
        (
            "makemigrations --check",
            [
                str(PYTHON),
                "-m",
                "django",
                "makemigrations",
                "--check",
                "--dry-run",
                "--settings=tests.settings",
            ],
        ),
    ]
    failed = []
    for name, command in gates:
        banner(name)
        if subprocess.call(command, cwd=ROOT, env=env) != 0:
            failed.append(name)
    print("\nlint: " + ("FAILED: " + ", ".join(failed) if failed else "all gates passed"))
    return 1 if failed else 0


def run_docs() -> int:
    ensure_venv("docs")
    banner("mkdocs build --strict")
    # Material prints a banner about MkDocs 2 on every build; it is not a warning of ours.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.call([str(BIN / "mkdocs"), "build", "--strict", "--clean"], cwd=ROOT, env=env)


def run_package() -> int:
    ensure_venv("release")
    banner("python -m build")
    dist = ROOT / "dist"
    for old in dist.glob("django_idempotency-*"):
        old.unlink()
    if subprocess.call([str(PYTHON), "-m", "build", "--outdir", str(dist)], cwd=ROOT) != 0:
        return 1
    banner("twine check --strict")
    built = sorted(str(path) for path in dist.glob("django_idempotency-*"))
    return subprocess.call([str(BIN / "twine"), "check", "--strict", *built], cwd=ROOT)


def run_tests(*, require_all: bool, only: str | None, pytest_args: list[str]) -> int:
    ensure_venv("test")
    wanted = ["sqlite", *SERVICES]
    if only:
        wanted = [name for name in wanted if name in only.split(",")]
    suites: dict[str, str] = {"sqlite": ""}
    skipped: dict[str, str] = {}
    for name, url in SERVICES.items():
        reason = probe(name, url)
        if reason:
            skipped[name] = reason
        else:
            suites[name] = url
    redis_reason = probe_redis(REDIS_URL)
    if redis_reason:
        skipped["redis"] = redis_reason
    results: dict[str, str] = {}
    for name in wanted:
        if name not in suites:
            continue
        banner(f"test suite on {name}")
        env = {**os.environ, "PYTHONDEVMODE": "1", "DATABASE_URL": suites[name]}
        if require_all:
            # CI: the browser test fails instead of skipping when Chromium is missing, and so
            # do tests that start their own servers when a binary is missing.
            env["IDEMPOTENCY_REQUIRE_BROWSER"] = "1"
            env["IDEMPOTENCY_REQUIRE_ALL"] = "1"
        if "redis" not in skipped:
            env["REDIS_URL"] = REDIS_URL
        started = time.monotonic()
        code = subprocess.call([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT, env=env)
        elapsed = time.monotonic() - started
        results[name] = {0: "passed", 5: "FAILED (no tests ran)"}.get(
            code, f"FAILED (pytest exit {code})"
        )
        results[name] += f" in {elapsed:.0f} s"
    return summarize(results, skipped, wanted, require_all)


def summarize(
    results: dict[str, str], skipped: dict[str, str], wanted: list[str], require_all: bool
) -> int:
    banner("summary")
    for name, outcome in results.items():
        print(f"  {name:<11} {outcome}")
    if "redis" not in skipped:
        print(f"  {'redis':<11} reachable; REDIS_URL={REDIS_URL} was passed to every suite")
    missing = {
        name: reason for name, reason in skipped.items() if name in wanted or name == "redis"
    }
    for name, reason in missing.items():
        print(f"  {name:<11} SKIPPED: {reason}")
        print(f"  {'':<11} start it with: {HOW_TO_START[name]}")
    if missing:
        print("\n" + "!" * 78)
        print(f"!!  NOT TESTED ON: {', '.join(missing)}. The locking guarantees are proven only on")
        print("!!  PostgreSQL and MariaDB; CI runs with --require-all, where this is a failure.")
        print("!" * 78)
    failed = any(not outcome.startswith("passed") for outcome in results.values())
    if failed or (require_all and missing):
        print("\nRESULT: FAILED")
        return 1
    print("\nRESULT: passed")
    return 0


def probe(name: str, url: str) -> str:
    """Return why the database at ``url`` cannot be used, or an empty string when it can."""
    host_port = url.split("@", 1)[-1].split("/", 1)[0]
    user = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    port = host_port.rsplit(":", 1)[-1]
    check = PROBES[name].format(port=port, user=user)
    done = subprocess.run([str(PYTHON), "-c", check], capture_output=True, text=True)
    if done.returncode == 0:
        return ""
    last_line = (done.stderr.strip().splitlines() or ["no answer"])[-1]
    return f"not reachable at {host_port} ({last_line[:120]})"


def probe_redis(url: str) -> str:
    """Return why Redis at ``url`` cannot be used, or an empty string when it answers PING."""
    host_port = url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return ""
    except OSError as exc:
        return f"not reachable at {host_port} ({exc})"
    return f"no PONG from {host_port}"


def banner(title: str) -> None:
    print(f"\n==== {title} " + "=" * max(0, 70 - len(title)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
