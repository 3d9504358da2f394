"""Start and stop a gunicorn serving the reliability views, and talk to it over raw HTTP/1.1."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")
BOOT_TIMEOUT = 30.0


@dataclass
class Reply:
    """One HTTP answer: status, headers (lower-cased names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed") == "true"

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers.get('content-type')} {self.body[:160]!r}>"


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """Return a ``DATABASE_URL`` for the database ``settings_dict`` describes (its test NAME)."""
    engine = settings_dict["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    auth = quote(settings_dict.get("USER") or "")
    if settings_dict.get("PASSWORD"):
        auth += ":" + quote(settings_dict["PASSWORD"])
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or {"postgres": 5432, "mysql": 3306}[scheme]
    return f"{scheme}://{auth}@{host}:{port}/{quote(settings_dict['NAME'])}"


class Server:
    """A gunicorn with sync workers on an ephemeral loopback port; always ``stop()`` it."""

    def __init__(self, database: str, *, workers: int, report_dir: Path, log: Path) -> None:
        self.workers = workers
        self.report_dir = report_dir
        self.log = log
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.reliability.settings",
            "DATABASE_URL": database,
            "RELIABILITY_REPORT_DIR": str(report_dir),
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.reliability.wsgi",
            "--bind=127.0.0.1:0",
            f"--workers={workers}",
            "--worker-class=sync",
            # A held request is killed by the test long before this; it only bounds a forgotten one.
            "--timeout=60",
            "--graceful-timeout=2",
            "--preload",
        ]
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            self.port = self._wait_until_listening()
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self) -> int:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.output()}")
            if match := LISTENING.search(self.log.read_bytes()):
                return int(match.group(1))
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not listen within {BOOT_TIMEOUT} s:\n{self.output()}")

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health/", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer within {BOOT_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        """Return what gunicorn and the application wrote so far."""
        return self.log.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Iterable[tuple[str, str | bytes]] = (),
        *,
        timeout: float = 30.0,
    ) -> Reply:
        """Send one request on a new connection; headers may repeat and carry any bytes."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            content = response.read()
            names = {name.lower(): value for name, value in response.getheaders()}
            return Reply(response.status, names, content)
        finally:
            connection.close()

    def post_json(
        self,
        path: str,
        data: object,
        *,
        key: str | None = None,
        auth: str | None = None,
        hold: float | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        """POST ``data`` as JSON with an ``Idempotency-Key`` and Basic credentials when given.

        ``hold`` asks the view to report its worker and then wait that long inside the view.
        """
        headers = [("Content-Type", "application/json")]
        if hold is not None:
            headers.append(("X-Hold", str(hold)))
        if key is not None:
            headers.append(("Idempotency-Key", key))
        if auth is not None:
            headers.append(("Authorization", auth))
        return self.request("POST", path, json.dumps(data).encode(), headers, timeout=timeout)

    def stop(self) -> None:
        """Stop gunicorn and its workers; kill them if they do not stop within a few seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class InFlight:
    """A request sent from a background thread; ``join()`` returns its reply or the error."""

    def __init__(self, send: Callable[[], Reply]) -> None:
        self.outcome: Reply | BaseException | None = None

        def run() -> None:
            try:
                self.outcome = send()
            except BaseException as error:  # the server may drop the connection on purpose
                self.outcome = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 30) -> Reply | BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request did not finish"
        return self.outcome
