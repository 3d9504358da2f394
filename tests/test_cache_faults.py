"""The cache store when Redis fails or holds what it cannot read, against real sockets and servers.

Fail closed by default: a request whose store cannot be reached gets 503 with ``Retry-After`` and
its view does not run. ``IDEMPOTENCY_FAIL_OPEN`` runs the view unprotected and logs a warning.
The shared Redis is never stopped: the tests that stop a server start a private one.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import uuid
from contextlib import closing, contextmanager

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings
from rest_framework.test import APIClient

from django_idempotency.events import UNAVAILABLE
from django_idempotency.stores.cache import CacheStore
from tests.helpers import SignedInClient, assert_problem, post
from tests.testapp import views
from tests.testapp.models import Charge

URL = "/api/charges/"
VIEW = "api_charge"
KEY_ONLY_URL = "/api/key-only/"
KEY_ONLY_VIEW = "api_charge_key_only"
LEASE_ON_CACHE = {"IDEMPOTENCY_MODE": "lease", "IDEMPOTENCY_STORE": "cache"}

pytestmark = pytest.mark.django_db(transaction=True)


def client() -> APIClient:
    return SignedInClient(raise_request_exception=False)


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_alias(url: str) -> dict[str, object]:
    """Return a django-redis cache for ``url`` with timeouts short enough for a test."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": f"idem-faults-{uuid.uuid4().hex}",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.3, "SOCKET_TIMEOUT": 0.3},
    }


@contextmanager
def cache_at(url: str, **extra: object):
    """Point the cache store at ``url`` (alias ``"faulty"``) for the block."""
    caches_setting = {**settings.CACHES, "faulty": redis_alias(url)}
    with override_settings(
        CACHES=caches_setting, IDEMPOTENCY_CACHE_ALIAS="faulty", **LEASE_ON_CACHE, **extra
    ):
        yield


def unavailable_events(caplog) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "django_idempotency"
        and getattr(record, "idempotency", {}).get("decision") == UNAVAILABLE
    ]


# --- Redis cannot be reached ---


def test_a_closed_port_fails_closed_with_503_and_the_view_does_not_run():
    with cache_at(f"redis://127.0.0.1:{free_port()}/0"):
        response = post(client(), URL, {"amount": 1}, key="k")

    assert_problem(response, 503, "storage-unavailable")
    assert int(response["Retry-After"]) >= 1
    assert views.executions[VIEW] == 0
    assert Charge.objects.count() == 0


def test_a_server_that_never_answers_fails_closed_after_the_socket_timeout():
    # Connections are accepted (the backlog) but nothing is ever read or written back.
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with cache_at(f"redis://127.0.0.1:{port}/0"):
            response = post(client(), URL, {"amount": 1}, key="k")

    assert_problem(response, 503, "storage-unavailable")
    assert time.monotonic() - started < 5
    assert views.executions[VIEW] == 0


def test_fail_open_runs_the_view_unprotected_and_logs_a_warning(caplog):
    caplog.set_level(logging.INFO, logger="django_idempotency")
    with cache_at(f"redis://127.0.0.1:{free_port()}/0", IDEMPOTENCY_FAIL_OPEN=True):
        first = post(client(), URL, {"amount": 1}, key="k")
        retry = post(client(), URL, {"amount": 1}, key="k")

    assert first.status_code == retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    # Unprotected: nothing could record the first execution, so the retry ran as well.
    assert views.executions[VIEW] == 2
    warnings = unavailable_events(caplog)
    assert len(warnings) == 2
    assert all(record.levelno == logging.WARNING for record in warnings)


# --- a private Redis server, stopped and started by the test ---


class PrivateRedis:
    """A throwaway ``redis-server`` on a free port, without persistence, owned by the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server executable")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_stopping_between_requests_fails_closed_then_recovers(private_redis):
    with cache_at(private_redis.url):
        first = post(client(), URL, {"amount": 1}, key="k")
        assert first.status_code == 201

        private_redis.stop()
        down = post(client(), URL, {"amount": 1}, key="k")
        assert_problem(down, 503, "storage-unavailable")
        assert "Retry-After" in down.headers
        assert views.executions[VIEW] == 1

        private_redis.start()
        fresh = post(client(), URL, {"amount": 2}, key="another")
        assert fresh.status_code == 201
        # A Redis without persistence forgot the first record when it restarted.
        again = post(client(), URL, {"amount": 1}, key="k")
        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again.headers
        assert views.executions[VIEW] == 3


def test_redis_stopping_while_the_view_runs_returns_the_views_response(private_redis, caplog):
    caplog.set_level(logging.INFO, logger="django_idempotency")
    outcome: dict[str, object] = {}

    def request() -> None:
        try:
            outcome["response"] = post(client(), KEY_ONLY_URL, {"sleep": 1}, key="k")
        finally:
            connections.close_all()

    with cache_at(private_redis.url):
        thread = threading.Thread(target=request, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while views.executions[KEY_ONLY_VIEW] < 1:
            assert time.monotonic() < deadline, "the view did not start"
            time.sleep(0.005)
        private_redis.stop()
        thread.join(15)
        assert not thread.is_alive()

    response = outcome["response"]
    assert response.status_code == 201
    assert views.executions[KEY_ONLY_VIEW] == 1
    [event] = unavailable_events(caplog)
    assert event.idempotency["status"] == 201
    assert "could not be stored" in event.idempotency["detail"]


# --- values this version cannot read: never a 500, never a second execution ---


@pytest.fixture
def shared_redis():
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: REDIS_URL is not set")
    prefix = f"faults-{uuid.uuid4().hex}"
    with override_settings(
        IDEMPOTENCY_CACHE_ALIAS="redis", IDEMPOTENCY_CACHE_KEY_PREFIX=prefix, **LEASE_ON_CACHE
    ):
        yield
    caches["redis"].delete_pattern(f"{prefix}:*")


def overwrite_the_record(change) -> None:
    """Replace the test's only cache record with ``change(value)``, keeping its lifetime."""
    store = CacheStore()
    redis = store.client
    [name] = list(redis.scan_iter(match=store.cache.make_key(f"{store.prefix}:*")))
    redis.set(name, change(redis.get(name)), keepttl=True)


def test_a_record_of_an_unknown_format_version_is_answered_already_processed(shared_redis):
    first = post(client(), URL, {"amount": 1}, key="k")
    assert first.status_code == 201

    overwrite_the_record(lambda value: json.dumps({**json.loads(value), "v": 2}))
    response = post(client(), URL, {"amount": 1}, key="k")

    body = assert_problem(response, 409, "already-processed")
    assert body["original_status"] == 201
    assert response["Location"] == first["Location"]
    assert views.executions[VIEW] == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda fields: {**fields, "status": "archived"}, id="unknown-status"),
        pytest.param(lambda fields: {**fields, "response_body": "not base64!"}, id="bad-body"),
        pytest.param(lambda fields: {**fields, "expires_at": "tomorrow"}, id="bad-time"),
        pytest.param(
            lambda fields: {k: v for k, v in fields.items() if k != "token"}, id="no-token"
        ),
    ],
)
def test_a_malformed_record_is_answered_already_processed(shared_redis, damage):
    first = post(client(), URL, {"amount": 1}, key="k")
    assert first.status_code == 201

    overwrite_the_record(lambda value: json.dumps(damage(json.loads(value))))
    response = post(client(), URL, {"amount": 1}, key="k")

    assert_problem(response, 409, "already-processed")
    assert views.executions[VIEW] == 1


def test_an_unreadable_value_is_answered_already_processed(shared_redis):
    first = post(client(), KEY_ONLY_URL, {"amount": 1}, key="k")
    assert first.status_code == 201

    overwrite_the_record(lambda value: b"\x80not json")
    response = post(client(), KEY_ONLY_URL, {"amount": 1}, key="k")

    assert_problem(response, 409, "already-processed")
    assert views.executions[KEY_ONLY_VIEW] == 1


def test_an_unreadable_value_without_a_fingerprint_is_already_processed_not_run(shared_redis):
    post(client(), URL, {"amount": 1}, key="k")

    overwrite_the_record(lambda value: b"[]")
    response = post(client(), URL, {"amount": 1}, key="k")

    # Its fingerprint cannot be compared; the key was used, so it is never run again.
    body = assert_problem(response, 409, "already-processed")
    assert "original_status" not in body
    assert views.executions[VIEW] == 1


# --- configuration ---


def test_a_cache_alias_that_is_not_redis_is_refused():
    with pytest.raises(ImproperlyConfigured, match="IDEMPOTENCY_CACHE_ALIAS.*Redis cache"):
        CacheStore("default")


def test_a_sharded_django_redis_client_is_refused():
    sharded = {
        **redis_alias("redis://127.0.0.1:6379/0"),
        "LOCATION": ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1"],
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
    }
    with (
        override_settings(CACHES={**settings.CACHES, "sharded": sharded}),
        pytest.raises(ImproperlyConfigured, match="no single Redis connection"),
    ):
        CacheStore("sharded")


def test_an_unknown_cache_alias_is_refused():
    with pytest.raises(ImproperlyConfigured, match="'nowhere', which is not in CACHES"):
        CacheStore("nowhere")
