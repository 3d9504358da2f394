"""Tests of the example project; run them with ``python manage.py test``.

Each endpoint is driven through DRF's test client: the first request runs the view, the same
request again is replayed byte for byte without running it, and the same key with another payload
is refused with 422. ``ChargeRetryTests`` and ``ChargeStormTests`` show the app's own test helper,
``django_idempotency.testing.assert_idempotent``.
"""

from __future__ import annotations

import json
import logging
import uuid
from io import StringIO
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase, TransactionTestCase, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyKey
from django_idempotency.testing import assert_idempotent
from payments.models import Charge, Payout, PayoutEvent, Refund
from payments.provider import provider
from payments.storm.client import Reply
from payments.storm.scenarios import Outcome, Storm

RELIABLE_PROVIDER = {"MAX_DELAY": 0.0, "FAILURE_RATE": 0.0, "SEED": "tests", "SLOW_DELAY": 0.0}
SECRET = {"HTTP_X_WEBHOOK_SECRET": "example-webhook-secret"}
CHARGE = {"amount": 1250, "currency": "EUR"}
PAYOUT = {"amount": 1000, "currency": "EUR", "destination": "DE89370400440532013000"}
FAST_HASHER = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGER = logging.getLogger("django_idempotency")
LOG_LEVEL = LOGGER.level


def setUpModule() -> None:
    """Keep the app's one-line-per-request log (shown by runserver) out of the test output."""
    LOGGER.setLevel(logging.WARNING)


def tearDownModule() -> None:
    """Restore the app's log level."""
    LOGGER.setLevel(LOG_LEVEL)


def caches_of_our_own() -> dict[str, dict[str, object]]:
    """Return the project's caches under a key prefix no other run or server shares."""
    prefix = f"example-tests-{uuid.uuid4().hex}"
    return {name: {**cache, "KEY_PREFIX": prefix} for name, cache in settings.CACHES.items()}


def client_for(username: str) -> APIClient:
    """Return an API client authenticated as a new user called ``username``."""
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user(username))
    return client


class IdempotentEndpointMixin:
    """First request, replay, mismatch: the three answers every idempotent endpoint gives."""

    client: APIClient

    def post(self, path: str, data: dict[str, object], key: str | None = "key-1", **extra: str):
        """Return the response to a JSON POST with ``key`` as the Idempotency-Key."""
        if key is not None:
            extra["HTTP_IDEMPOTENCY_KEY"] = key
        return self.client.post(path, data, format="json", **extra)

    def assert_idempotent(self, path: str, data: dict[str, object], changed: dict[str, object]):
        """Assert first, replay and mismatch on ``path``; return the first response."""
        first = self.post(path, data)
        assert first.status_code == 201, first.content
        assert "Idempotent-Replayed" not in first
        again = self.post(path, data)
        assert again.status_code == 201
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        mismatch = self.post(path, {**data, **changed})
        assert mismatch.status_code == 422
        assert mismatch["Content-Type"] == "application/problem+json"
        assert json.loads(mismatch.content)["type"].endswith("#key-mismatch")
        return first


class ChargeTests(IdempotentEndpointMixin, TestCase):
    def setUp(self):
        self.client = client_for("alice")

    def test_first_replay_mismatch(self):
        self.assert_idempotent("/api/charges/", {"amount": 1250}, {"amount": 1300})
        assert Charge.objects.get().amount == 1250

    def test_key_is_required(self):
        response = self.post("/api/charges/", {"amount": 1250}, key=None)
        assert response.status_code == 400
        assert not Charge.objects.exists()

    def test_list_filters_by_description(self):
        self.post("/api/charges/", {"amount": 1, "description": "a"}, key="a")
        self.post("/api/charges/", {"amount": 1, "description": "b"}, key="b")
        listed = self.client.get("/api/charges/", {"description": "a"}).json()
        assert [charge["description"] for charge in listed] == ["a"]

    def test_plain_charges_do_the_same_work_without_protection(self):
        data = {"amount": 1250, "currency": "eur"}
        plain = [self.post("/api/plain-charges/", data) for _ in range(2)]
        idempotent = self.post("/api/charges/", data, key="other")
        assert [response.status_code for response in plain] == [201, 201]
        assert "Idempotent-Replayed" not in plain[1]
        assert Charge.objects.count() == 3
        assert plain[0].json().keys() == idempotent.json().keys()
        assert plain[0].json()["currency"] == idempotent.json()["currency"] == "EUR"


class ChargeRetryTests(TestCase):
    """Sequential duplicates through the app's test helper: a TestCase's transaction rules out threads."""

    def setUp(self):
        self.user = get_user_model().objects.create_user("alice")
        self.client = APIClient()
        self.client.force_authenticate(self.user)

    def test_a_charge_runs_once_per_key(self):
        check = assert_idempotent(
            self.client,
            "post",
            "/api/charges/",
            CHARGE,
            executions=Charge.objects.filter(owner=self.user),
        )
        self.assertEqual(check.retry["Idempotent-Replayed"], "true")


class ChargeStormTests(TransactionTestCase):
    """Concurrent duplicates through the app's test helper, each from its own thread and connection."""

    def test_concurrent_duplicates_charge_once(self):
        user = get_user_model().objects.create_user("bob")
        client = APIClient()
        client.force_authenticate(user)
        check = assert_idempotent(
            client,
            "post",
            "/api/charges/",
            CHARGE,
            executions=Charge.objects.filter(owner=user),
            concurrent=8,
        )
        self.assertTrue(check.concurrent)


class AdminTests(TestCase):
    def test_the_key_records_are_browsable(self):
        client_for("alice").post(
            "/api/charges/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="browse-me"
        )
        admin = get_user_model().objects.create_superuser("admin", password=None)
        self.client.force_login(admin)
        changelist = self.client.get("/admin/django_idempotency/idempotencykey/?q=browse-me")
        assert changelist.status_code == 200
        assert b"browse-me" in changelist.content
        assert b"api/charges" in changelist.content
        for page in ("charge", "refund", "payout"):
            assert self.client.get(f"/admin/payments/{page}/").status_code == 200


class RefundTests(IdempotentEndpointMixin, TestCase):
    def setUp(self):
        self.client = client_for("alice")
        self.charge = Charge.objects.create(amount=1000, owner=get_user_model().objects.get())

    def test_first_replay_mismatch(self):
        data = {"charge": self.charge.pk, "amount": 400}
        self.assert_idempotent("/api/refunds/", data, {"amount": 500})
        assert Refund.objects.get().amount == 400

    def test_a_rejected_refund_leaves_the_key_free(self):
        too_much = self.post("/api/refunds/", {"charge": self.charge.pk, "amount": 5000})
        assert too_much.status_code == 400
        fixed = self.post("/api/refunds/", {"charge": self.charge.pk, "amount": 500})
        assert fixed.status_code == 201


@override_settings(PAYMENTS_PROVIDER=RELIABLE_PROVIDER)
class PayoutTests(IdempotentEndpointMixin, TransactionTestCase):
    """Payouts run in lease mode, which needs no transaction around the test: TransactionTestCase."""

    def setUp(self):
        # With REDIS_URL set the payouts' keys are in Redis, which outlives the test database.
        isolated = override_settings(CACHES=caches_of_our_own())
        isolated.enable()
        self.addCleanup(isolated.disable)
        provider.reset()
        self.client = client_for("alice")

    def test_first_replay_mismatch(self):
        first = self.assert_idempotent("/api/payouts/", PAYOUT, {"amount": 2000})
        payout = Payout.objects.get()
        assert first.json()["provider_reference"] == payout.provider_reference
        if settings.PAYMENTS_IDEMPOTENCY_STORE == "database":
            # Lease mode stored the response under the fencing token of its claim.
            assert IdempotencyKey.objects.get().fencing_token is not None
        else:
            assert not IdempotencyKey.objects.exists()

    def test_a_provider_failure_is_not_stored_and_the_retry_runs_again(self):
        failed = self.post("/api/payouts/", {**PAYOUT, "simulate": "fail_first"})
        assert failed.status_code == 503
        assert failed["Retry-After"] == "1"
        assert not IdempotencyKey.objects.exists()
        retried = self.post("/api/payouts/", {**PAYOUT, "simulate": "fail_first"})
        assert retried.status_code == 201
        assert "Idempotent-Replayed" not in retried
        assert Payout.objects.count() == 1

    @override_settings(PAYMENTS_PROVIDER={**RELIABLE_PROVIDER, "FAILURE_RATE": 1.0})
    def test_the_provider_fails_at_its_configured_rate(self):
        assert self.post("/api/payouts/", PAYOUT).status_code == 503
        assert not Payout.objects.exists()

    @override_settings(PAYMENTS_DEMO_CONTROLS=False)
    def test_simulations_need_demo_controls(self):
        response = self.post("/api/payouts/", {**PAYOUT, "simulate": "slow"})
        assert response.status_code == 400
        assert "simulate" in response.json()


class WebhookTests(TestCase):
    def setUp(self):
        self.client = APIClient()
        owner = get_user_model().objects.create_user("alice")
        self.payout = Payout.objects.create(owner=owner, provider_reference="po_1", **PAYOUT)

    def deliver(self, data, key="evt_1", **extra):
        """Return the response to a form-encoded webhook delivery."""
        return self.client.post(
            "/webhooks/provider/", data, HTTP_IDEMPOTENCY_KEY=key, **{**SECRET, **extra}
        )

    def test_first_replay_mismatch_with_form_fields(self):
        first = self.deliver({"type": "payout.paid", "payout": "po_1"})
        assert first.status_code == 201
        again = self.deliver({"type": "payout.paid", "payout": "po_1"})
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        mismatch = self.deliver({"type": "payout.failed", "payout": "po_1"})
        assert mismatch.status_code == 422
        assert PayoutEvent.objects.count() == 1
        self.payout.refresh_from_db()
        assert self.payout.status == Payout.PAID

    def test_json_body(self):
        response = self.client.post(
            "/webhooks/provider/",
            {"type": "payout.failed", "payout": "po_1"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="evt_2",
            **SECRET,
        )
        assert response.status_code == 201
        assert response.json()["status"] == Payout.FAILED

    def test_a_wrong_secret_is_refused_before_the_key_is_recorded(self):
        response = self.deliver(
            {"type": "payout.paid", "payout": "po_1"}, HTTP_X_WEBHOOK_SECRET="guess"
        )
        assert response.status_code == 403
        assert not IdempotencyKey.objects.exists()

    def test_errors_are_not_stored(self):
        assert self.deliver({"type": "payout.lost", "payout": "po_1"}).status_code == 400
        assert self.deliver({"type": "payout.paid", "payout": "po_2"}).status_code == 404
        assert self.deliver({"type": "payout.paid", "payout": "po_1"}).status_code == 201


@override_settings(PASSWORD_HASHERS=FAST_HASHER)
class SetupDemoTests(TestCase):
    def test_creates_the_accounts_once(self):
        outputs = [StringIO(), StringIO()]
        for output in outputs:
            call_command("setup_demo", "--base-url=http://example.test", stdout=output)
        users = get_user_model().objects.order_by("username")
        assert [(u.username, u.is_superuser) for u in users] == [
            ("alice", False),
            ("bob", False),
            ("demo", True),
        ]
        assert users.get(username="demo").check_password("demo")
        assert Token.objects.count() == 3
        second = outputs[1].getvalue()
        assert "(exists)" in second and "(created)" not in second
        for token in Token.objects.all():
            assert token.key in outputs[0].getvalue() and token.key in second
        assert "http://example.test/admin/django_idempotency/idempotencykey/" in second
        assert "retry_storm --base-url http://example.test" in second


@override_settings(PASSWORD_HASHERS=FAST_HASHER)
class RetryStormCommandTests(TestCase):
    def test_no_server_is_a_clear_error(self):
        with self.assertRaisesMessage(CommandError, "No server answers at http://127.0.0.1:9"):
            call_command("retry_storm", "--base-url=http://127.0.0.1:9", stdout=StringIO())

    def test_a_base_url_without_scheme_is_a_clear_error(self):
        with self.assertRaisesMessage(CommandError, "--base-url must be the server's address"):
            call_command("retry_storm", "--base-url=127.0.0.1:8000", stdout=StringIO())

    def test_a_failed_expectation_fails_the_command(self):
        def broken() -> Outcome:
            replies = [Reply(201), Reply(201)]
            return Outcome("1. duplicates", "2 × POST", replies, "2 charges", [("one", False)])

        output = StringIO()
        with (
            mock.patch.object(Storm, "scenarios", return_value=[broken]),
            mock.patch(
                "payments.management.commands.retry_storm.Command.prepare",
                return_value=Storm(alice=None, bob=None, webhook=None, run="test", timeout=1),
            ),
            self.assertRaisesMessage(CommandError, "Expectations failed in: 1. duplicates."),
        ):
            call_command("retry_storm", stdout=output)
        assert "NO   one" in output.getvalue()
        assert "201 ×2" in output.getvalue()
