"""``IdempotentMixin`` on a ViewSet: class options, hooks, and actions."""

from __future__ import annotations

import pytest
from django.urls import path
from rest_framework import viewsets
from rest_framework.response import Response

from django_idempotency import IdempotentMixin
from django_idempotency.models import IdempotencyKey
from tests.helpers import SignedInClient, assert_problem, post
from tests.testapp import views
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db


def test_viewset_create_runs_once_and_replays(client):
    first = post(client, "/viewset/charges/", {"amount": 5}, key="k")
    again = post(client, "/viewset/charges/", {"amount": 5}, key="k")
    assert first.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert views.executions["viewset_create"] == 1
    assert Charge.objects.count() == 1


def test_class_attribute_makes_the_key_required(client):
    assert_problem(post(client, "/viewset/charges/", {"amount": 5}), 400, "key-missing")
    assert Charge.objects.count() == 0


def test_actions_are_covered_too(client):
    charge = Charge.objects.create(amount=5)
    url = f"/viewset/charges/{charge.pk}/refund/"
    post(client, url, {}, key="r")
    again = post(client, url, {}, key="r")
    assert again["Idempotent-Replayed"] == "true"
    assert views.executions["viewset_refund"] == 1


def test_patch_is_covered_and_safe_methods_are_not(client):
    charge = Charge.objects.create(amount=5)
    url = f"/viewset/charges/{charge.pk}/"
    assert client.get(url).status_code == 200
    post(client, url, {"amount": 6}, key="p", method="patch")
    assert (
        post(client, url, {"amount": 6}, key="p", method="patch")["Idempotent-Replayed"] == "true"
    )
    assert IdempotencyKey.objects.filter(method="PATCH").count() == 1


class HookedViewSet(IdempotentMixin, viewsets.ViewSet):
    idempotency_ttl = 60
    idempotency_mismatch_status = 409

    def get_idempotency_key(self, request):
        return request.headers.get("X-Request-Id")

    def get_idempotency_scope(self, request):
        return f"tenant:{request.headers.get('X-Tenant', 'none')}"

    def get_idempotency_fingerprint(self, request):
        return str(request.data.get("amount"))

    def create(self, request):
        views.executed("hooked")
        return Response({"amount": request.data.get("amount")}, status=201)


urlpatterns = [path("hooked/", HookedViewSet.as_view({"post": "create"}))]


@pytest.mark.urls(__name__)
def test_hooks_replace_key_scope_and_fingerprint():
    client = SignedInClient()
    headers = {"HTTP_X_REQUEST_ID": "r1", "HTTP_X_TENANT": "acme"}
    post(client, "/hooked/", {"amount": 5, "note": "a"}, **headers)
    again = post(client, "/hooked/", {"amount": 5, "note": "b"}, **headers)
    assert again["Idempotent-Replayed"] == "true", "the custom fingerprint ignores 'note'"
    assert_problem(post(client, "/hooked/", {"amount": 6}, **headers), 409, "key-mismatch")
    post(client, "/hooked/", {"amount": 5}, HTTP_X_REQUEST_ID="r1", HTTP_X_TENANT="other")
    assert views.executions["hooked"] == 2
    assert set(IdempotencyKey.objects.values_list("scope", flat=True)) == {
        "tenant:acme",
        "tenant:other",
    }
    record = IdempotencyKey.objects.get(scope="tenant:acme")
    assert (record.expires_at - record.completed_at).total_seconds() == 60


class OversizedHooksViewSet(HookedViewSet):
    def get_idempotency_key(self, request):
        return request.headers.get("X-Request-Id")

    def get_idempotency_scope(self, request):
        return "tenant:" + "t" * 400

    def get_idempotency_fingerprint(self, request):
        return "f" * 500 + str(request.data.get("amount"))


urlpatterns.append(path("oversized/", OversizedHooksViewSet.as_view({"post": "create"})))


@pytest.mark.urls(__name__)
def test_hook_values_are_fitted_to_their_columns():
    client = SignedInClient()
    assert_problem(
        post(client, "/oversized/", {"amount": 5}, HTTP_X_REQUEST_ID="k" * 256), 400, "key-invalid"
    )
    post(client, "/oversized/", {"amount": 5}, HTTP_X_REQUEST_ID="r1")
    assert (
        post(client, "/oversized/", {"amount": 5}, HTTP_X_REQUEST_ID="r1")["Idempotent-Replayed"]
        == "true"
    )
    assert_problem(
        post(client, "/oversized/", {"amount": 6}, HTTP_X_REQUEST_ID="r1"), 409, "key-mismatch"
    )
    record = IdempotencyKey.objects.get()
    assert len(record.scope) == 255 and "sha256:" in record.scope
    assert len(record.fingerprint) == 64


def test_methods_without_a_handler_are_left_to_drf(client):
    assert (
        client.put("/viewset/charges/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 405
    )
    assert IdempotencyKey.objects.count() == 0


class KeyOnlyViewSet(HookedViewSet):
    idempotency_fingerprint = False


urlpatterns.append(path("key-only/", KeyOnlyViewSet.as_view({"post": "create"})))


@pytest.mark.urls(__name__)
def test_the_fingerprint_hook_is_skipped_when_fingerprints_are_off():
    client = SignedInClient()
    post(client, "/key-only/", {"amount": 5}, HTTP_X_REQUEST_ID="r1")
    assert (
        post(client, "/key-only/", {"amount": 6}, HTTP_X_REQUEST_ID="r1")["Idempotent-Replayed"]
        == "true"
    )
    assert IdempotencyKey.objects.get().fingerprint == ""


def test_the_policy_is_built_once_per_class_and_settings_generation(settings):
    """No-key requests must cost what plain costs: no policy is built per request."""
    first, second = views.ChargeViewSet(), views.ChargeViewSet()
    policy = first.get_idempotency_policy()
    assert second.get_idempotency_policy() is policy
    settings.IDEMPOTENCY_TTL = 60
    rebuilt = first.get_idempotency_policy()
    assert rebuilt is not policy
    assert rebuilt.ttl.total_seconds() == 60


def test_hooks_of_a_class_are_called_on_the_view_handling_the_request(client):
    """The class's cached policy calls each request's own view instance."""

    class Tenanted(IdempotentMixin, viewsets.ViewSet):
        def get_idempotency_scope(self, request):
            return f"tenant:{self.tenant}"

        def initial(self, request, *args, **kwargs):
            self.tenant = request.headers.get("X-Tenant", "none")
            super().initial(request, *args, **kwargs)

        def create(self, request):
            views.executed("tenanted")
            return Response({"tenant": self.tenant}, status=201)

    view = Tenanted.as_view({"post": "create"})
    from rest_framework.test import APIRequestFactory, force_authenticate

    from tests.factories import UserFactory

    user = UserFactory()

    def send(tenant):
        request = APIRequestFactory().post(
            "/t/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k", HTTP_X_TENANT=tenant
        )
        force_authenticate(request, user)
        return view(request)

    assert send("a").status_code == send("b").status_code == 201
    assert send("a")["Idempotent-Replayed"] == "true"
    assert views.executions["tenanted"] == 2
    assert set(IdempotencyKey.objects.values_list("scope", flat=True)) == {"tenant:a", "tenant:b"}
