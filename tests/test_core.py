"""The protocol, through real views: decisions, storage policy, replay fidelity, scopes, expiry."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import api_view, authentication_classes
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from django_idempotency import idempotent
from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory, UserFactory
from tests.helpers import assert_problem, post
from tests.testapp import views
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

URL = "/api/charges/"


class FrozenClock:
    """An injectable clock for ``IDEMPOTENCY_CLOCK``."""

    def __init__(self):
        self.now = timezone.now()

    def __call__(self):
        return self.now


clock = FrozenClock()


# -- first execution and replay ---------------------------------------------------------------


def test_first_request_returns_the_views_own_response(client):
    response = post(client, URL, {"amount": 5}, key="k")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert response["X-Request-Secret"] == "first-response-only"
    record = IdempotencyKey.objects.get()
    assert (record.status, record.response_status, record.method, record.path) == (
        "completed",
        201,
        "POST",
        URL,
    )
    assert record.expires_at == record.completed_at + timedelta(hours=24)


def test_retries_replay_byte_identical_json_with_status_and_allowed_headers(client):
    first = post(client, URL, {"amount": 5, "cookie": True}, key="k")
    assert "session_hint" in first.cookies
    for _ in range(3):
        again = post(client, URL, {"amount": 5, "cookie": True}, key="k")
        assert again.status_code == 201
        assert again.content == first.content
        assert again["Content-Type"] == first["Content-Type"]
        assert again["Location"] == first["Location"]
        assert again["Idempotent-Replayed"] == "true"
        assert "X-Request-Secret" not in again, "only allow-listed headers are replayed"
        assert "session_hint" not in again.cookies, "Set-Cookie is never replayed"
    assert views.executions["api_charge"] == 1
    assert Charge.objects.count() == 1


def test_binary_bodies_replay_byte_identical(client):
    first = post(client, URL, {"binary": True}, key="bin")
    again = post(client, URL, {"binary": True}, key="bin")
    assert first["Content-Type"] == again["Content-Type"] == "application/octet-stream"
    assert again.content == first.content == bytes(range(256)) * 4
    assert views.executions["api_charge"] == 1


def test_reordered_json_and_whitespace_still_replay(client):
    first = client.post(
        URL, '{"amount": 5, "note": "x"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    again = client.post(
        URL,
        '{ "note":"x",\n "amount":5 }',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


def test_quoted_and_bare_keys_are_the_same_key(client):
    post(client, URL, {"amount": 5}, key="abc")
    again = post(client, URL, {"amount": 5}, key='"abc"')
    assert again["Idempotent-Replayed"] == "true"


# -- mismatch ---------------------------------------------------------------------------------


def test_same_key_with_another_payload_is_refused_and_changes_nothing(client):
    first = post(client, URL, {"amount": 5}, key="k")
    before = IdempotencyKey.objects.values().get()
    body = assert_problem(post(client, URL, {"amount": 6}, key="k"), 422, "key-mismatch")
    assert body["code"] == "idempotency_key_mismatch"
    assert IdempotencyKey.objects.values().get() == before
    assert views.executions["api_charge"] == 1
    again = post(client, URL, {"amount": 5}, key="k")
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"


def test_the_query_string_is_part_of_the_fingerprint(client):
    post(client, URL + "?currency=eur", {"amount": 5}, key="k")
    assert_problem(post(client, URL + "?currency=usd", {"amount": 5}, key="k"), 422, "key-mismatch")
    assert (
        post(client, URL + "?currency=eur", {"amount": 5}, key="k")["Idempotent-Replayed"] == "true"
    )


def test_path_parameters_are_part_of_the_fingerprint(client):
    post(client, "/api/charges/1/", {"amount": 5}, key="k")
    assert_problem(post(client, "/api/charges/2/", {"amount": 5}, key="k"), 422, "key-mismatch")


def test_mismatch_status_is_configurable_per_view(client):
    post(client, "/api/custom/", {"amount": 5}, key="k")
    assert_problem(post(client, "/api/custom/", {"amount": 6}, key="k"), 409, "key-mismatch")


@override_settings(IDEMPOTENCY_MISMATCH_STATUS=400)
def test_mismatch_status_is_configurable_globally(client):
    post(client, URL, {"amount": 5}, key="k")
    assert_problem(post(client, URL, {"amount": 6}, key="k"), 400, "key-mismatch")


def test_excluded_fields_do_not_count_as_a_mismatch(client):
    post(client, "/api/exclude/", {"amount": 5, "client_timestamp": 1}, key="k")
    again = post(client, "/api/exclude/", {"amount": 5, "client_timestamp": 2}, key="k")
    assert again["Idempotent-Replayed"] == "true"
    assert_problem(
        post(client, "/api/exclude/", {"amount": 6, "client_timestamp": 2}, key="k"),
        422,
        "key-mismatch",
    )


def test_fingerprint_off_is_a_key_only_contract(client):
    first = post(client, "/api/key-only/", {"amount": 5}, key="k")
    again = post(client, "/api/key-only/", {"amount": 999}, key="k")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert IdempotencyKey.objects.get().fingerprint == ""


# -- scope ------------------------------------------------------------------------------------


def test_two_users_with_the_same_key_and_payload_never_share_a_response(client):
    alice, bob = UserFactory(), UserFactory()
    client.force_authenticate(alice)
    a = post(client, URL, {"amount": 5}, key="shared")
    client.force_authenticate(bob)
    b = post(client, URL, {"amount": 5}, key="shared")
    assert json.loads(a.content)["owner"] == alice.pk
    assert json.loads(b.content)["owner"] == bob.pk
    assert "Idempotent-Replayed" not in b
    assert views.executions["api_charge"] == 2
    client.force_authenticate(alice)
    assert json.loads(post(client, URL, {"amount": 5}, key="shared").content)["owner"] == alice.pk


def test_the_same_key_on_another_endpoint_is_another_record(client):
    post(client, URL, {"amount": 5}, key="k")
    other = post(client, "/api/charges-other/", {"amount": 5}, key="k")
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other
    assert views.executions["api_charge"] == 2
    assert IdempotencyKey.objects.count() == 2


@pytest.mark.parametrize(
    ("first_url", "retry_url"),
    [
        ("/api/suffixed/", "/api/suffixed.json"),
        ("/viewset/charges/", "/viewset/charges.json"),
    ],
)
def test_a_format_suffix_is_the_same_endpoint(client, first_url, retry_url):
    first = post(client, first_url, {"amount": 5}, key="k")
    again = post(client, retry_url, {"amount": 5}, key="k")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Charge.objects.count() == 1


def test_the_same_key_with_another_method_is_another_record(client):
    post(client, URL, {"amount": 5}, key="k")
    patched = post(client, URL, {"amount": 5}, key="k", method="patch")
    assert "Idempotent-Replayed" not in patched
    assert views.executions["api_charge"] == 2


def test_keyed_anonymous_requests_are_refused_by_default(anonymous_client):
    """Fail closed: callers with no principal would otherwise share one scope and its responses."""
    body = assert_problem(
        post(anonymous_client, URL, {"amount": 5}, key="k"), 403, "authentication-required"
    )
    # The answer names both fixes: a principal function, or opting the view in.
    assert "IDEMPOTENCY_PRINCIPAL" in body["detail"]
    assert "anonymous='shared'" in body["detail"]
    assert IdempotencyKey.objects.count() == 0
    assert views.executions["api_charge"] == 0
    # Without a key, an anonymous request is not the app's business.
    assert post(anonymous_client, URL, {"amount": 5}).status_code == 201


def test_anonymous_requests_can_be_refused_explicitly(anonymous_client):
    assert_problem(
        post(anonymous_client, "/api/no-anonymous/", {"amount": 5}, key="k"),
        403,
        "authentication-required",
    )
    assert IdempotencyKey.objects.count() == 0
    anonymous_client.force_authenticate(UserFactory())
    assert post(anonymous_client, "/api/no-anonymous/", {"amount": 5}, key="k").status_code == 201


@override_settings(IDEMPOTENCY_ANONYMOUS="shared")
def test_anonymous_callers_share_one_scope_only_when_opted_in(anonymous_client):
    first = post(anonymous_client, URL, {"amount": 5}, key="k")
    replay = post(APIClient(), URL, {"amount": 5}, key="k")
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert IdempotencyKey.objects.get().scope == "anonymous POST api/charges"


@override_settings(IDEMPOTENCY_ANONYMOUS="bypass")
def test_anonymous_requests_can_bypass(anonymous_client):
    post(anonymous_client, URL, {"amount": 5}, key="k")
    post(anonymous_client, URL, {"amount": 5}, key="k")
    assert views.executions["api_charge"] == 2
    assert IdempotencyKey.objects.count() == 0


class MerchantKey(BaseAuthentication):
    """The API-key pattern: ``request.auth`` names the merchant, ``request.user`` stays anonymous."""

    def authenticate(self, request):
        merchant = request.META.get("HTTP_X_MERCHANT")
        return (AnonymousUser(), merchant) if merchant else None


def merchant(request):
    return f"merchant:{request.auth}" if request.auth else None


def merchant_view(**options):
    @api_view(["POST"])
    @authentication_classes([MerchantKey])
    @idempotent(**options)
    def charge(request):
        views.executed("merchant_charge")
        return views.Response(
            {"merchant": request.auth, "n": views.executions["merchant_charge"]}, status=201
        )

    return charge


def merchant_post(view, merchant_name):
    request = APIRequestFactory().post(
        "/merchant/",
        {"amount": 5},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
        HTTP_X_MERCHANT=merchant_name,
    )
    return view(request)


def test_callers_known_only_by_request_auth_are_refused_without_a_principal_hook():
    """Merchant B must never receive merchant A's stored charge for the same key."""
    view = merchant_view()
    assert merchant_post(view, "a").status_code == 403
    assert merchant_post(view, "b").status_code == 403
    assert views.executions["merchant_charge"] == 0


def test_a_principal_hook_keeps_callers_known_by_request_auth_apart():
    view = merchant_view(principal=merchant)
    first_a = merchant_post(view, "a")
    first_b = merchant_post(view, "b")
    assert first_a.status_code == first_b.status_code == 201
    assert "Idempotent-Replayed" not in first_b
    assert json.loads(first_b.rendered_content)["merchant"] == "b"
    retry_a = merchant_post(view, "a")
    assert retry_a["Idempotent-Replayed"] == "true"
    assert json.loads(retry_a.content)["merchant"] == "a"
    assert views.executions["merchant_charge"] == 2
    assert set(IdempotencyKey.objects.values_list("scope", flat=True)) == {
        "merchant:a POST /merchant",
        "merchant:b POST /merchant",
    }


@override_settings(IDEMPOTENCY_PRINCIPAL="tests.test_core.merchant")
def test_the_principal_hook_is_a_setting_too():
    view = merchant_view()
    assert merchant_post(view, "a").status_code == 201
    assert merchant_post(view, "a")["Idempotent-Replayed"] == "true"


# -- what is stored: failures are never replayed ----------------------------------------------


def test_an_exception_rolls_back_and_the_retry_runs_again(client):
    client.raise_request_exception = False
    failed = post(client, URL, {"amount": 5, "fail": "raise"}, key="k")
    assert failed.status_code == 500
    assert Charge.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0
    retry = post(client, URL, {"amount": 5}, key="k")
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    assert Charge.objects.count() == 1


def test_a_5xx_response_is_not_stored_and_rolls_back(client):
    assert post(client, URL, {"amount": 5, "fail": "500"}, key="k").status_code == 500
    assert Charge.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0
    assert post(client, URL, {"amount": 5, "fail": "500"}, key="k").status_code == 500
    assert views.executions["api_charge"] == 2


def test_a_4xx_response_is_not_stored_by_default(client):
    assert post(client, URL, {"amount": 5, "status": 402}, key="k").status_code == 402
    assert IdempotencyKey.objects.count() == 0
    assert Charge.objects.count() == 0
    post(client, URL, {"amount": 5, "status": 402}, key="k")
    assert views.executions["api_charge"] == 2


def test_configured_4xx_statuses_are_stored_and_replayed(client):
    first = post(client, "/api/custom/", {"amount": 5, "status": 402}, key="k")
    again = post(client, "/api/custom/", {"amount": 5, "status": 402}, key="k")
    assert again.status_code == 402
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert views.executions["api_charge_custom"] == 1


def test_drf_validation_errors_are_not_stored(client):
    assert post(client, "/api/serializer/", {"amount": 0}, key="k").status_code == 400
    assert IdempotencyKey.objects.count() == 0
    assert post(client, "/api/serializer/", {"amount": 3}, key="k").status_code == 201


def test_redirects_are_stored(client):
    first = post(client, URL, {"amount": 5, "status": 303}, key="k")
    again = post(client, URL, {"amount": 5, "status": 303}, key="k")
    assert again.status_code == 303
    assert again["Location"] == first["Location"]


# -- responses kept without a body ------------------------------------------------------------


@override_settings(IDEMPOTENCY_MAX_BODY_SIZE=100)
def test_oversized_bodies_answer_already_processed(client):
    first = post(client, URL, {"size": 101}, key="k")
    assert first.status_code == 200 and len(first.content) == 101
    body = assert_problem(post(client, URL, {"size": 101}, key="k"), 409, "already-processed")
    assert body["original_status"] == 200
    assert views.executions["api_charge"] == 1


def test_streaming_responses_answer_already_processed(client):
    first = post(client, URL, {"stream": True}, key="k")
    assert b"".join(first.streaming_content) == b"ab"
    assert_problem(post(client, URL, {"stream": True}, key="k"), 409, "already-processed")
    assert views.executions["api_charge"] == 1


def test_replay_conflict_stores_no_body_and_answers_with_the_location(client):
    first = post(client, "/api/secret/", {"amount": 5}, key="k")
    assert IdempotencyKey.objects.get().response_body is None
    again = post(client, "/api/secret/", {"amount": 5}, key="k")
    body = assert_problem(again, 409, "already-processed")
    assert body["original_status"] == 201
    assert again["Location"] == first["Location"]


def test_redaction_changes_only_the_stored_copy(client):
    def redact(stored):
        return type(stored)(stored.status, stored.headers, b'{"redacted": true}')

    with override_settings(IDEMPOTENCY_REDACT=redact):
        first = post(client, URL, {"amount": 5}, key="k")
        again = post(client, URL, {"amount": 5}, key="k")
    assert json.loads(first.content)["amount"] == 5
    assert again.content == b'{"redacted": true}'


def test_a_failing_redaction_hook_stores_no_body_but_still_protects_the_key(client):
    def broken(stored):
        raise ValueError("boom")

    with override_settings(IDEMPOTENCY_REDACT=broken):
        assert post(client, URL, {"amount": 5}, key="k").status_code == 201
        assert_problem(post(client, URL, {"amount": 5}, key="k"), 409, "already-processed")
    assert views.executions["api_charge"] == 1


def test_an_undecodable_record_answers_already_processed(client):
    post(client, URL, {"amount": 5}, key="k")
    IdempotencyKey.objects.update(response_headers={"not": "pairs"})
    assert_problem(post(client, URL, {"amount": 5}, key="k"), 409, "already-processed")
    assert views.executions["api_charge"] == 1


# -- key validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "x" * 256, "clé", "bad\x01key", "a, b", '"a", "b"'])
def test_invalid_keys_get_400_and_leave_nothing(client, raw):
    response = client.post(URL, {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY=raw)
    assert_problem(response, 400, "key-invalid")
    assert IdempotencyKey.objects.count() == 0
    assert views.executions["api_charge"] == 0


def test_a_missing_key_runs_unprotected_by_default(client):
    post(client, URL, {"amount": 5})
    post(client, URL, {"amount": 5})
    assert views.executions["api_charge"] == 2
    assert IdempotencyKey.objects.count() == 0


def test_a_missing_key_is_refused_when_required(client):
    body = assert_problem(post(client, "/api/required/", {"amount": 5}), 400, "key-missing")
    assert body["code"] == "idempotency_key_missing"
    assert views.executions["api_charge_required"] == 0


@override_settings(IDEMPOTENCY_REQUIRED=True)
def test_required_can_be_the_global_default(client):
    assert_problem(post(client, URL, {"amount": 5}), 400, "key-missing")


@pytest.mark.parametrize("method", ["get", "head", "options"])
def test_safe_methods_are_untouched(client, method):
    response = getattr(client, method)(URL, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 200
    assert IdempotencyKey.objects.count() == 0


def test_methods_outside_the_policy_are_untouched(client):
    client.put(URL, {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    client.put(URL, {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert views.executions["api_charge"] == 2
    assert IdempotencyKey.objects.count() == 0


# -- DRF's own rejections come first ----------------------------------------------------------


def test_authentication_and_permission_failures_create_no_record(anonymous_client):
    response = post(anonymous_client, "/api/authenticated/", {"amount": 5}, key="k")
    assert response.status_code in (401, 403)
    assert IdempotencyKey.objects.count() == 0
    anonymous_client.force_authenticate(UserFactory())
    assert post(anonymous_client, "/api/authenticated/", {"amount": 5}, key="k").status_code == 201


def test_throttled_requests_create_no_record(client):
    response = post(client, "/api/throttled/", {"amount": 5}, key="k")
    assert response.status_code == 429
    assert IdempotencyKey.objects.count() == 0
    assert views.executions["api_charge_throttled"] == 0


def test_a_replay_is_only_served_after_authentication(client):
    user = UserFactory()
    client.force_authenticate(user)
    post(client, "/api/authenticated/", {"amount": 5}, key="k")
    client.force_authenticate(None)
    assert post(client, "/api/authenticated/", {"amount": 5}, key="k").status_code in (401, 403)


# -- expiry -----------------------------------------------------------------------------------


def test_ttl_with_an_injected_clock(client):
    clock.now = timezone.now()
    with override_settings(IDEMPOTENCY_CLOCK=clock, IDEMPOTENCY_TTL=timedelta(hours=1)):
        post(client, URL, {"amount": 5}, key="k")
        clock.now += timedelta(minutes=59)
        assert post(client, URL, {"amount": 5}, key="k")["Idempotent-Replayed"] == "true"
        clock.now += timedelta(minutes=1)
        fresh = post(client, URL, {"amount": 5}, key="k")
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh
    assert views.executions["api_charge"] == 2
    record = IdempotencyKey.objects.get()
    assert record.completed_at == clock.now
    assert record.expires_at == clock.now + timedelta(hours=1)


def test_replays_do_not_extend_retention(client):
    clock.now = timezone.now()
    with override_settings(IDEMPOTENCY_CLOCK=clock):
        post(client, URL, {"amount": 5}, key="k")
        expires = IdempotencyKey.objects.get().expires_at
        clock.now += timedelta(hours=23)
        post(client, URL, {"amount": 5}, key="k")
    assert IdempotencyKey.objects.get().expires_at == expires


def test_an_expired_record_with_another_payload_is_a_new_request(client):
    user = UserFactory()
    client.force_authenticate(user)
    IdempotencyKeyFactory(expired=True, scope=f"user:{user.pk} POST api/charges", key="k")
    response = post(client, URL, {"amount": 7}, key="k")
    assert response.status_code == 201
    assert json.loads(response.content)["amount"] == 7
    record = IdempotencyKey.objects.get()
    assert record.expires_at > timezone.now()


def test_an_in_progress_record_answers_409(client):
    user = UserFactory()
    client.force_authenticate(user)
    IdempotencyKeyFactory(
        in_progress=True, scope=f"user:{user.pk} POST api/charges", key="k", fingerprint=""
    )
    with override_settings(IDEMPOTENCY_FINGERPRINT=False):
        response = post(client, URL, {"amount": 5}, key="k")
    assert_problem(response, 409, "in-progress")
    assert response["Retry-After"] == "1"
    assert views.executions["api_charge"] == 0


def test_a_mismatch_wins_over_in_progress(client):
    user = UserFactory()
    client.force_authenticate(user)
    IdempotencyKeyFactory(in_progress=True, scope=f"user:{user.pk} POST api/charges", key="k")
    assert_problem(post(client, URL, {"amount": 5}, key="k"), 422, "key-mismatch")


@override_settings(IDEMPOTENCY_ENABLED=False)
def test_the_app_can_be_switched_off(client):
    post(client, URL, {"amount": 5}, key="k")
    post(client, URL, {"amount": 5}, key="k")
    assert views.executions["api_charge"] == 2
    assert IdempotencyKey.objects.count() == 0


def test_deeply_nested_json_is_fingerprinted_not_a_500(client):
    # The refund action never parses its body, so only the app's fingerprinting meets this input.
    charge = Charge.objects.create(amount=5)
    url = f"/viewset/charges/{charge.pk}/refund/"
    body = "[" * 100_000 + "]" * 100_000
    first = client.post(url, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep")
    again = client.post(url, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep")
    assert first.status_code == 200
    assert again["Idempotent-Replayed"] == "true"


def test_engine_applied_twice_runs_once(client):
    from rest_framework.decorators import api_view

    from django_idempotency import idempotent

    @api_view(["POST"])
    @idempotent
    @idempotent
    def twice(request):
        views.executed("twice")
        return views.Response({"ok": True}, status=201)

    user = UserFactory()
    request = APIRequestFactory().post("/twice/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    force_authenticate(request, user)
    assert twice(request).status_code == 201
    request = APIRequestFactory().post("/twice/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    force_authenticate(request, user)
    assert twice(request)["Idempotent-Replayed"] == "true"
    assert views.executions["twice"] == 1
