"""``@idempotent`` on every kind of view, and loud errors when it is misused."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework.decorators import api_view
from rest_framework.views import APIView

from django_idempotency import idempotent
from django_idempotency.models import IdempotencyKey
from tests.factories import UserFactory
from tests.helpers import post
from tests.testapp import views
from tests.testapp.models import Charge


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/charges/", "api_charge"),
        ("/apiview/charges/", "apiview_post"),
        ("/viewset/plain/capture/", "viewset_action"),
    ],
)
def test_drf_views_execute_once_and_replay(client, url, name):
    first = post(client, url, {"amount": 5}, key="k")
    again = post(client, url, {"amount": 5}, key="k")
    assert first.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert views.executions[name] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_plain_django_function_views(client, content_type):
    body = json.dumps({"amount": 5}) if content_type == "application/json" else "amount=5"
    first = client.post(
        "/plain/charges/", body, content_type=content_type, HTTP_IDEMPOTENCY_KEY="k"
    )
    again = client.post(
        "/plain/charges/", body, content_type=content_type, HTTP_IDEMPOTENCY_KEY="k"
    )
    assert first.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert views.executions["plain_charge"] == 1


@pytest.mark.django_db
def test_django_class_based_views_through_method_decorator(rf):
    class ChargeView(View):
        @method_decorator(idempotent)
        def post(self, request):
            Charge.objects.create(amount=1)
            return HttpResponse("made", status=201)

    view = ChargeView.as_view()
    user = UserFactory()

    def request():
        made = rf.post("/cbv/", HTTP_IDEMPOTENCY_KEY="k")
        made.user = user
        return made

    first = view(request())
    again = view(request())
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content == b"made"
    assert Charge.objects.count() == 1


def test_options_are_checked_when_decorating():
    with pytest.raises(TypeError, match="Unknown idempotency option.*'ttl_seconds'"):
        idempotent(ttl_seconds=5)


def test_above_api_view_is_refused_with_the_right_usage():
    with pytest.raises(TypeError, match="above @api_view") as caught:

        @idempotent
        @api_view(["POST"])
        def view(request):
            return HttpResponse()

    assert '@api_view(["POST"])\n    @idempotent' in str(caught.value)


def test_wrapping_an_api_view_as_view_is_refused():
    class Charges(APIView):
        pass

    with pytest.raises(TypeError, match="above @api_view"):
        idempotent(Charges.as_view())


def test_a_class_is_refused():
    with pytest.raises(TypeError, match="IdempotentMixin"):
        idempotent(APIView)


def test_async_views_are_refused():
    async def view(request):
        return HttpResponse()

    with pytest.raises(TypeError, match="async"):
        idempotent(view)


def test_something_that_is_not_a_view_is_refused():
    with pytest.raises(TypeError, match="decorates views"):
        idempotent(42)


def test_calling_without_a_request_is_refused():
    @idempotent
    def not_a_view(value):
        return HttpResponse()

    with pytest.raises(TypeError, match="no request"):
        not_a_view("x")


def test_the_decorated_view_keeps_its_name_and_attributes():
    def charge(request):
        return HttpResponse()

    charge.custom = "kept"
    decorated = idempotent(required=True)(charge)
    assert decorated.__name__ == "charge"
    assert decorated.custom == "kept"


@pytest.mark.django_db
def test_decorated_action_is_still_routed(client):
    assert IdempotencyKey.objects.count() == 0
    post(client, "/viewset/plain/capture/", {"amount": 1}, key="k")
    assert IdempotencyKey.objects.get().scope.endswith("POST ^viewset/plain/capture")
