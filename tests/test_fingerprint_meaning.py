"""The fingerprint means what the view will read, and never defeats Django's own request limits."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from tests.testapp.views_fingerprint import executions

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.views_fingerprint")]

PROBLEM = "application/problem+json"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def _reset():
    executions.clear()
    yield
    executions.clear()


def problem_slug(response) -> str:
    assert response["Content-Type"] == PROBLEM, response.content[:300]
    return json.loads(response.content)["type"].rsplit("#", 1)[-1]


def send(client, url, body, *, key=None, **extra):
    """POST ``body``: a dict is sent as multipart, a str as a form body."""
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    if isinstance(body, str):
        extra.setdefault("content_type", FORM)
    return client.post(url, body, **extra)


@pytest.mark.parametrize("view", ["drf", "django"])
@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_repeated_body_fields_keep_the_order_of_their_values(view, encoding):
    client = Client()
    url = f"/{view}/echo/"

    def body(*amounts):
        if encoding == "form":
            return "&".join(f"amount={amount}" for amount in amounts) + "&note=n"
        return {"amount": list(amounts), "note": "n"}

    first = send(client, url, body("100", "5"), key="k")
    assert first.status_code == 201
    # Django reads the last value: the first request meant 5, this one means 100.
    second = send(client, url, body("5", "100"), key="k")
    assert second.status_code == 422, second.content
    assert problem_slug(second) == "key-mismatch"
    assert sum(executions.values()) == 1
    # The same values in the same order, with the names in another order, is the same request.
    if encoding == "form":
        again = send(client, url, "note=n&amount=100&amount=5", key="k")
    else:
        again = send(client, url, body("100", "5"), key="k")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"


def test_repeated_query_parameters_keep_the_order_of_their_values():
    client = Client()
    assert send(client, "/drf/echo/?amount=100&amount=5&b=1", {}, key="k").status_code == 201
    second = send(client, "/drf/echo/?amount=5&amount=100&b=1", {}, key="k")
    assert second.status_code == 422
    assert problem_slug(second) == "key-mismatch"
    replay = send(client, "/drf/echo/?b=1&amount=100&amount=5", {}, key="k")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert executions["drf_echo"] == 1


@pytest.fixture
def session_client():
    """Return a DRF client signed in through the session, with CSRF checks enforced."""
    user = get_user_model().objects.create_user(username="uploader")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    token = "a" * 32
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    client.defaults["HTTP_X_CSRFTOKEN"] = token
    return client


def test_a_session_authenticated_drf_upload_digests_the_file(session_client):
    # SessionAuthentication's CSRF check reads request.POST, which makes DRF parse (and consume)
    # the body before the view's handler, and so before the fingerprint.
    def raw(content, key):
        return session_client.post(
            "/drf/upload/",
            content,
            content_type="application/octet-stream",
            HTTP_CONTENT_DISPOSITION="attachment; filename=receipt.txt",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    assert raw(b"one", "raw").status_code == 201
    other = raw(b"two", "raw")
    assert other.status_code == 422, other.content
    assert problem_slug(other) == "key-mismatch"
    replay = raw(b"one", "raw")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert executions["drf_upload"] == 1

    def multipart(content, key):
        upload = SimpleUploadedFile("receipt.txt", content)
        return session_client.post(
            "/drf/multipart-upload/", {"file": upload}, format="multipart", HTTP_IDEMPOTENCY_KEY=key
        )

    assert multipart(b"one", "multipart").status_code == 201
    assert multipart(b"two", "multipart").status_code == 422
    assert multipart(b"one", "multipart").headers["Idempotent-Replayed"] == "true"
    assert executions["drf_multipart_upload"] == 1


def test_a_raw_body_over_data_upload_max_memory_size_gets_a_problem_not_an_html_400(events):
    big = b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    client = Client()
    unkeyed = client.post("/django/raw/", big, content_type="application/octet-stream")
    assert unkeyed.status_code == 201
    assert unkeyed.json()["size"] == len(big)

    keyed = client.post(
        "/django/raw/", big, content_type="application/octet-stream", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert keyed.status_code == 413
    assert problem_slug(keyed) == "payload-too-large"
    detail = keyed.json()["detail"]
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in detail
    assert "fingerprint" in detail
    assert executions["django_raw"] == 1
    assert events()[-1]["decision"] == "rejected"
    assert events()[-1]["status"] == 413

    # A JSON body is read into memory to canonicalize it: the same limit, the same answer.
    json_body = json.dumps({"note": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    too_big = client.post(
        "/drf/echo/", json_body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="j"
    )
    assert too_big.status_code == 413
    assert problem_slug(too_big) == "payload-too-large"
    assert executions["drf_echo"] == 0


def many_fields(count):
    return "&".join(f"f{i}=1" for i in range(count))


@pytest.mark.parametrize("where", ["query", "form", "multipart"])
def test_data_upload_max_number_fields_applies_to_the_fingerprint(where, events):
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    client = Client()

    def keyed(count, key):
        if where == "query":
            return send(client, f"/django/echo/?{many_fields(count)}", {}, key=key)
        if where == "form":
            return send(client, "/django/echo/", many_fields(count), key=key)
        return send(client, "/django/echo/", {f"f{i}": "1" for i in range(count)}, key=key)

    # Django's own limit, exactly: at the limit the request runs.
    assert keyed(limit, "at-the-limit").status_code == 201
    over = keyed(limit + 1, "over")
    assert over.status_code == 400
    assert problem_slug(over) == "too-many-fields"
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in over.json()["detail"]
    assert executions["django_echo"] == 1
    assert events()[-1]["decision"] == "rejected"
    assert events()[-1]["status"] == 400


def test_an_800k_field_form_is_refused_before_it_is_parsed():
    # About 100x the CPU of the same request without a key, when the fingerprint parsed and
    # sorted all of them; Django's limit makes it a count of the separators.
    response = send(Client(), "/django/echo/", "a&" * 800_000, key="k")
    assert response.status_code == 400
    assert problem_slug(response) == "too-many-fields"


def upload_body(large_size):
    """Return a multipart body with repeated fields and files, one file ``large_size`` bytes."""
    return {
        "note": ["first", "second"],
        "large": SimpleUploadedFile("large.bin", b"L" * large_size, "application/pdf"),
        "small": [
            SimpleUploadedFile("a.txt", b"a", "text/plain"),
            SimpleUploadedFile("b.txt", b"b", "text/plain"),
        ],
    }


@pytest.mark.parametrize("url", ["/django/upload-handlers/", "/drf/upload-handlers/"])
def test_upload_handlers_set_in_the_view_see_the_same_post_and_files(url):
    client = Client()
    # Small enough for Django's in-memory handler, and over FILE_UPLOAD_MAX_MEMORY_SIZE (the
    # fingerprint's copy of the body then goes to disk).
    for n, size in enumerate([10, settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 10]):
        unkeyed = send(client, url, upload_body(size))
        assert unkeyed.status_code == 201
        seen = unkeyed.json()
        assert {f[0] for _name, files in seen["files"] for f in files} == {"TemporaryUploadedFile"}

        keyed = send(client, url, upload_body(size), key=f"k{n}")
        assert keyed.status_code == 201, keyed.content
        assert keyed.json() == seen
        replay = send(client, url, upload_body(size), key=f"k{n}")
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == seen
    assert sum(executions.values()) == 4


@pytest.mark.parametrize("url", ["/django/echo/", "/drf/echo/"])
def test_a_multipart_body_without_a_boundary_is_a_logged_rejection(url, events):
    response = Client().post(
        url, b"--x\r\n\r\n", content_type="multipart/form-data", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 400
    assert problem_slug(response) == "malformed-body"
    assert sum(executions.values()) == 0
    [event] = events()
    assert event["decision"] == "rejected"
    assert event["status"] == 400
