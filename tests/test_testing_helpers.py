"""``django_idempotency.testing``: the helpers prove exactly-once, and catch a view that is not."""

from __future__ import annotations

import json

import pytest
from django.http import JsonResponse
from django.test import TestCase, TransactionTestCase
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from django_idempotency.models import IdempotencyKey
from django_idempotency.testing import (
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    STALE_LEASE,
    assert_idempotent,
    fingerprint_for,
    make_key_record,
    scope_for,
)
from tests.factories import UserFactory
from tests.helpers import SignedInDjangoClient, assert_problem, post, signed_in_user
from tests.testapp import views
from tests.testapp.models import Charge

# Views that are NOT idempotent, mounted by the tests that use ``@pytest.mark.urls(__name__)``.
_seen: dict[str, bytes] = {}


@csrf_exempt
def double_charge(request):
    """Runs on every request, retries included."""
    charge = Charge.objects.create(amount=1, note="double")
    return JsonResponse({"id": charge.pk}, status=201)


@csrf_exempt
def fake_replay(request):
    """Answers retries like a replay, but runs its side effect every time."""
    key = request.headers["Idempotency-Key"]
    charge = Charge.objects.create(amount=1, note="fake")
    body = _seen.setdefault(key, json.dumps({"id": charge.pk}).encode())
    response = JsonResponse(json.loads(body), status=201)
    if body != json.dumps({"id": charge.pk}).encode():
        response["Idempotent-Replayed"] = "true"
    return response


_calls: dict[str, int] = {}


@csrf_exempt
def refused_once(request):
    """Runs once; the second request is refused as if the key store were down; then replays."""
    key = request.headers["Idempotency-Key"]
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] == 1:
        Charge.objects.create(amount=1, note="refused")
        return JsonResponse({"ok": True}, status=201)
    if _calls[key] == 2:
        problem = {"type": "about:blank", "title": "down", "status": 503, "detail": "down"}
        return JsonResponse(problem, status=503, content_type="application/problem+json")
    response = JsonResponse({"ok": True}, status=201)
    response["Idempotent-Replayed"] = "true"
    return response


urlpatterns = [
    path("double/", double_charge),
    path("fake/", fake_replay),
    path("refused/", refused_once),
]


@pytest.mark.django_db(transaction=True)
def test_concurrent_burst_runs_the_view_once(client):
    check = assert_idempotent(
        client, "post", "/api/charges/", {"amount": 5}, executions=Charge.objects.all()
    )
    assert check.concurrent
    assert check.executions == 1
    assert len(check.burst) == 5
    assert check.first.status_code == 201
    assert json.loads(check.retry.content) == json.loads(check.first.content)
    assert views.executions["api_charge"] == 1
    assert IdempotencyKey.objects.get(key=check.key).status == IdempotencyKey.Status.COMPLETED


@pytest.mark.django_db
def test_inside_a_transaction_the_burst_is_sequential(client):
    check = assert_idempotent(
        client, "post", "/api/required/", {"amount": 5}, executions=lambda: Charge.objects.count()
    )
    assert not check.concurrent
    assert [r.status_code for r in check.responses] == [201] * 6
    assert [r.headers.get("Idempotent-Replayed") for r in check.responses] == [None] + ["true"] * 5


@pytest.mark.django_db
def test_threads_demanded_inside_a_transaction_is_a_clear_error(client):
    with pytest.raises(AssertionError, match="TransactionTestCase"):
        assert_idempotent(
            client, "post", "/api/charges/", {}, executions=Charge.objects.all(), burst="threads"
        )
    assert Charge.objects.count() == 0


@pytest.mark.django_db
def test_replay_conflict_views(client):
    check = assert_idempotent(
        client,
        "post",
        "/api/secret/",
        {"amount": 1},
        executions=Charge.objects.all(),
        concurrent=2,
        expect_replay=False,
    )
    assert_problem(check.retry, 409, "already-processed")


@pytest.mark.django_db
def test_headers_and_key_are_sent(client):
    user = UserFactory()
    client.force_authenticate(user)
    check = assert_idempotent(
        client,
        "post",
        "/api/charges/",
        {"amount": 3},
        key="my-key",
        headers={"X-Trace": "1"},
        executions=Charge.objects.filter(owner=user),
        concurrent=1,
    )
    assert check.key == "my-key"
    assert IdempotencyKey.objects.get().scope == scope_for("POST", "/api/charges/", user=user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("url", "concurrent", "message"),
    [
        ("/double/", 5, "answered by the view itself"),
        ("/double/", 1, "should replay the first response"),
        ("/fake/", 1, "The view ran 2 times"),
    ],
)
def test_a_view_that_runs_twice_fails(url, concurrent, message):
    _seen.clear()
    with pytest.raises(AssertionError, match=message):
        assert_idempotent(
            SignedInDjangoClient(),
            "post",
            url,
            {"a": 1},
            executions=Charge.objects.all(),
            concurrent=concurrent,
        )
    assert Charge.objects.count() == concurrent + 1


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_a_refusing_store_fails_unless_allowed():
    _calls.clear()
    with pytest.raises(AssertionError, match="found the key store unavailable"):
        assert_idempotent(
            SignedInDjangoClient(),
            "post",
            "/refused/",
            {},
            executions=Charge.objects.all(),
            concurrent=2,
        )
    _calls.clear()
    check = assert_idempotent(
        SignedInDjangoClient(),
        "post",
        "/refused/",
        {},
        executions=Charge.objects.all(),
        concurrent=2,
        allow_unavailable=True,
    )
    assert [r.status_code for r in check.responses] == [201, 503, 201]


def test_bad_arguments(client):
    with pytest.raises(ValueError, match="concurrent must be at least 1"):
        assert_idempotent(client, "post", "/api/charges/", executions=lambda: 0, concurrent=0)
    with pytest.raises(ValueError, match="burst must be"):
        assert_idempotent(client, "post", "/api/charges/", executions=lambda: 0, burst="fast")


class TestCaseStyle(TestCase):
    """In a ``TestCase`` the burst is sent one request after another."""

    def test_plain_django_view(self):
        self.client.force_login(UserFactory())
        check = assert_idempotent(
            self.client, "post", "/plain/charges/", {"amount": 2}, executions=Charge.objects.all()
        )
        self.assertFalse(check.concurrent)
        self.assertEqual(check.first.status_code, 201)

    def test_logged_in_client(self):
        user = UserFactory()
        self.client.force_login(user)
        check = assert_idempotent(
            self.client,
            "post",
            "/api/authenticated/",
            {"amount": 2},
            executions=Charge.objects.filter(owner=user),
        )
        self.assertEqual(json.loads(check.first.content)["owner"], user.pk)


class TransactionTestCaseStyle(TransactionTestCase):
    """In a ``TransactionTestCase`` the burst runs in threads, one client each."""

    def test_viewset_with_the_mixin(self):
        user = UserFactory()
        self.client.force_login(user)  # the session cookie goes to every thread's client
        check = assert_idempotent(
            self.client,
            "post",
            "/viewset/charges/",
            {"amount": 4},
            executions=lambda: views.executions["viewset_create"],
            concurrent=4,
        )
        self.assertTrue(check.concurrent)
        self.assertEqual(check.first.status_code, 201)
        self.assertEqual(Charge.objects.count(), 1)


@pytest.mark.django_db
class TestKeyRecords:
    def test_states(self):
        completed = make_key_record(COMPLETED)
        in_progress = make_key_record(IN_PROGRESS)
        expired = make_key_record(EXPIRED)
        stale = make_key_record(STALE_LEASE)
        assert completed.status == expired.status == IdempotencyKey.Status.COMPLETED
        assert in_progress.status == stale.status == IdempotencyKey.Status.IN_PROGRESS
        assert in_progress.lease_expires_at > in_progress.created_at > stale.lease_expires_at
        assert list(IdempotencyKey.objects.expired(completed.created_at)) == [expired]
        assert IdempotencyKey.objects.count() == 4

    def test_unknown_state(self):
        with pytest.raises(ValueError, match="'done'"):
            make_key_record("done")

    def test_completed_record_is_replayed(self, client):
        make_key_record(
            COMPLETED,
            key="k1",
            path="/api/key-only/",
            response_body=b'{"id": 99}',
            user=signed_in_user(),
        )
        response = post(client, "/api/key-only/", {"amount": 1}, key="k1")
        assert response.status_code == 201
        assert json.loads(response.content) == {"id": 99}
        assert response["Idempotent-Replayed"] == "true"
        assert views.executions["api_charge_key_only"] == 0

    def test_records_are_scoped_to_the_user(self, client):
        user = UserFactory()
        make_key_record(COMPLETED, key="k1", path="/api/key-only/", user=user)
        post(client, "/api/key-only/", {"amount": 1}, key="k1")  # the tester: another scope
        assert views.executions["api_charge_key_only"] == 1
        client.force_authenticate(user)
        assert post(client, "/api/key-only/", {}, key="k1")["Idempotent-Replayed"] == "true"
        assert views.executions["api_charge_key_only"] == 1

    def test_fingerprint_of_the_data(self, client):
        make_key_record(
            COMPLETED, key="k1", path="/api/charges/", data={"amount": 1}, user=signed_in_user()
        )
        assert post(client, "/api/charges/", {"amount": 1}, key="k1")["Idempotent-Replayed"]
        assert_problem(post(client, "/api/charges/", {"amount": 2}, key="k1"), 422, "key-mismatch")
        assert views.executions["api_charge"] == 0
        assert fingerprint_for("POST", "/api/charges/", {}, fingerprint=False) == ""

    def test_expired_record_runs_the_view(self, client):
        make_key_record(EXPIRED, key="k1", path="/api/key-only/", user=signed_in_user())
        assert post(client, "/api/key-only/", {"amount": 1}, key="k1").status_code == 201
        assert views.executions["api_charge_key_only"] == 1

    def test_in_progress_record_answers_409(self, client):
        make_key_record(IN_PROGRESS, key="k1", path="/api/nowait/", data={}, user=signed_in_user())
        assert_problem(post(client, "/api/nowait/", {}, key="k1"), 409, "in-progress")
        assert views.executions["api_charge_nowait"] == 0
