"""One event per handled request: the decision is logged once, without the raw key, and signalled."""

from __future__ import annotations

import hashlib

import pytest

from django_idempotency import signals
from django_idempotency.events import Event, key_hash
from tests.helpers import SignedInClient, post, signed_in_scope

pytestmark = pytest.mark.django_db

KEY = "a-secret-looking-key-0123456789"


@pytest.fixture
def received():
    """Connect a receiver to every signal; return the (signal name, event) pairs it saw."""
    seen: list[tuple[str, Event]] = []
    names = (
        "executed",
        "replayed",
        "mismatch",
        "in_progress",
        "released",
        "lease_lost",
        "rejected",
    )
    receivers = {}
    for name in names:

        def receiver(sender, request, event, _name=name, **kwargs):
            seen.append((_name, event))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def decisions(events) -> list[str]:
    return [event["decision"] for event in events()]


def test_each_decision_is_logged_once_and_signalled(events, received, caplog):
    client = SignedInClient()
    post(client, "/api/charges/", {"amount": 1}, key=KEY)
    post(client, "/api/charges/", {"amount": 1}, key=KEY)
    post(client, "/api/charges/", {"amount": 2}, key=KEY)
    post(client, "/api/charges/", {"fail": "500"}, key="other")
    post(client, "/api/charges/", {"amount": 1})
    post(client, "/api/charges/", {"amount": 1}, key="")
    assert decisions(events) == [
        "executed",
        "replayed",
        "mismatch",
        "released",
        "unprotected",
        "rejected",
    ]
    assert [name for name, _event in received] == [
        "executed",
        "replayed",
        "mismatch",
        "released",
        "rejected",
    ]
    executed = received[0][1]
    assert executed.status == 201
    assert executed.method == "POST"
    assert executed.path == "/api/charges/"
    assert executed.mode == "atomic"
    assert executed.store == "database"
    assert executed.scope == signed_in_scope("POST", "api/charges")
    assert executed.duration_ms > 0
    assert received[1][1].status == 201
    assert received[2][1].status == 422
    assert received[3][1].detail == "response status not stored"
    assert received[4][1].status == 400


def test_the_raw_key_is_never_logged_only_its_short_hash(events, caplog):
    post(SignedInClient(), "/api/charges/", {"amount": 1}, key=KEY)
    post(SignedInClient(), "/api/charges/", {"amount": 1}, key=KEY)
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in str(record.__dict__)
    expected = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert key_hash(KEY) == expected
    assert {event["key_hash"] for event in events()} == {expected}
    assert f"key={expected}" in caplog.text


def test_levels(events, caplog):
    post(SignedInClient(), "/api/charges/", {"amount": 1})
    post(SignedInClient(), "/api/charges/", {"amount": 1}, key="k")
    levels = [r.levelname for r in caplog.records if r.name == "django_idempotency"]
    assert levels == ["DEBUG", "INFO"]


def test_an_exception_in_the_view_is_logged_as_released(events, received):
    with pytest.raises(RuntimeError):
        post(SignedInClient(), "/api/charges/", {"fail": "raise"}, key="k")
    # The exception propagates (Django answers 500); the released claim is still one event.
    assert decisions(events) == ["released"]
    assert received[0][1].status is None
    assert received[0][1].detail == "the view raised"


def test_an_in_progress_answer_is_logged(events, received):
    from django_idempotency.models import IdempotencyKey
    from tests.factories import IdempotencyKeyFactory

    post(SignedInClient(), "/api/lease/", {"amount": 1}, key="k")
    record = IdempotencyKey.objects.get()
    IdempotencyKeyFactory(
        scope=record.scope, key="busy", fingerprint=record.fingerprint, in_progress=True
    )
    post(SignedInClient(), "/api/lease/", {"amount": 1}, key="busy")
    assert decisions(events)[-1] == "in_progress"
    assert received[-1][0] == "in_progress"
    assert received[-1][1].status == 409


def test_a_failing_receiver_never_changes_the_response(caplog):
    def broken(sender, **kwargs):
        raise ValueError("metrics backend down")

    signals.executed.connect(broken)
    try:
        response = post(SignedInClient(), "/api/charges/", {"amount": 1}, key="k")
    finally:
        signals.executed.disconnect(broken)
    assert response.status_code == 201
    assert "metrics backend down" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_store_is_logged_as_unavailable(events, settings):
    settings.IDEMPOTENCY_STORE = "cache"
    settings.IDEMPOTENCY_CACHE_ALIAS = "closed"
    settings.CACHES = {
        **settings.CACHES,
        "closed": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    response = post(SignedInClient(), "/api/lease/", {"amount": 1}, key="k")
    assert response.status_code == 503
    assert decisions(events) == ["unavailable"]
