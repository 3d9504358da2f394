"""Problem responses and their replaceable factory."""

from __future__ import annotations

import json

import pytest
from django.http import JsonResponse
from django.test import override_settings

from django_idempotency.exceptions import (
    AlreadyProcessed,
    AuthenticationRequired,
    KeyInvalid,
    KeyMismatch,
    KeyMissing,
    RequestInProgress,
    StorageUnavailable,
)
from django_idempotency.responses import problem_response
from tests.helpers import post, signed_in_scope


def test_every_error_has_its_own_problem_type(rf):
    errors = [
        KeyMissing,
        KeyInvalid,
        KeyMismatch,
        RequestInProgress,
        AlreadyProcessed,
        AuthenticationRequired,
        StorageUnavailable,
    ]
    types = set()
    for error in errors:
        body = json.loads(problem_response(rf.post("/"), error()).content)
        assert set(body) >= {"type", "title", "status", "detail", "code"}
        types.add(body["type"])
    assert len(types) == len(errors)


def test_retry_after_is_sent(rf):
    response = problem_response(rf.post("/"), RequestInProgress(retry_after=3))
    assert response.status_code == 409
    assert response["Retry-After"] == "3"


def teapot(request, error):
    return JsonResponse({"mine": error.default_code}, status=418)


@pytest.mark.django_db
@override_settings(IDEMPOTENCY_ERROR_RESPONSE="tests.test_responses.teapot")
def test_the_response_factory_is_replaceable(client):
    response = post(client, "/api/required/", {"amount": 1})
    assert response.status_code == 418
    assert json.loads(response.content) == {"mine": "idempotency_key_missing"}


def custom_exception_handler(exc, context):
    from rest_framework.response import Response

    return Response(
        {"handled_by": "project", "problem": exc.detail},
        status=exc.status_code,
        headers={"X-Handler": "1"},
    )


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={"EXCEPTION_HANDLER": "tests.test_responses.custom_exception_handler"}
)
def test_a_projects_own_drf_exception_handler_renders_our_errors(client):
    response = post(client, "/api/required/", {"amount": 1})
    assert response.status_code == 400
    assert response["X-Handler"] == "1"
    body = json.loads(response.content)
    assert body["handled_by"] == "project"
    assert body["problem"]["code"] == "idempotency_key_missing"


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={"EXCEPTION_HANDLER": "tests.test_responses.custom_exception_handler"}
)
def test_the_handler_gets_retry_after_too(client):
    from tests.factories import IdempotencyKeyFactory

    IdempotencyKeyFactory(
        in_progress=True, scope=signed_in_scope("POST", "api/charges"), key="k", fingerprint=""
    )
    with override_settings(IDEMPOTENCY_FINGERPRINT=False):
        response = post(client, "/api/charges/", {"amount": 1}, key="k")
    assert response.status_code == 409
    assert response["Retry-After"] == "1"
    assert response["X-Handler"] == "1"


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={"EXCEPTION_HANDLER": "tests.test_responses.custom_exception_handler"}
)
def test_plain_views_get_problems_whatever_drf_is_set_to(client):
    response = client.post("/plain/charges/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def declining_handler(exc, context):
    return None


@pytest.mark.django_db
@override_settings(REST_FRAMEWORK={"EXCEPTION_HANDLER": "tests.test_responses.declining_handler"})
def test_a_handler_that_declines_leaves_the_problem_response(client):
    response = post(client, "/api/required/", {"amount": 1})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_replay_keeps_only_headers_still_allowed_and_a_missing_content_type(rf):
    from django_idempotency.policy import Policy
    from django_idempotency.responses import replay
    from django_idempotency.stores.base import StoredResponse

    stored = StoredResponse(204, (("Location", "/x/"), ("ETag", '"v1"')), b"")
    with override_settings(IDEMPOTENCY_REPLAY_HEADERS=["Location"]):
        response = replay(stored, Policy.build())
    assert response.status_code == 204
    assert response["Location"] == "/x/"
    assert "ETag" not in response
    assert "Content-Type" not in response
