"""Replays keep the first response's representation; the admin shows any stored body."""

from __future__ import annotations

import gzip
import json

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.cache import cc_delim_re

from django_idempotency.models import IdempotencyKey
from tests.factories import UserFactory
from tests.testapp import views
from tests.testapp.views_representation import LONG_BODY

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.views_representation")]


def vary(response):
    """Return the header names in the response's ``Vary``, lower-cased."""
    return {name.lower() for name in cc_delim_re.split(response.get("Vary", "")) if name}


def twice(client, url, first_headers=None, retry_headers=None):
    """Return the first response and its retry's, sent with the same key and body."""
    first = client.post(
        url, {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k", **(first_headers or {})
    )
    retry = client.post(
        url, {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k", **(retry_headers or {})
    )
    assert first.status_code == 201, first.content
    assert retry["Idempotent-Replayed"] == "true"
    return first, retry


@pytest.mark.parametrize(
    ("url", "view"), [("/private/", "private"), ("/drf-private/", "drf_private")]
)
def test_a_replay_keeps_the_cache_control_that_forbade_storing_it(client, url, view):
    first, retry = twice(client, url)
    assert {"no-store", "private"} <= set(cc_delim_re.split(first["Cache-Control"]))
    assert retry["Cache-Control"] == first["Cache-Control"]
    assert retry.get("Expires") == first.get("Expires")
    assert views.executions[view] == 1


def test_a_replay_keeps_the_vary_and_language_the_view_set(client):
    first, retry = twice(
        client, "/negotiated/", {"HTTP_ACCEPT_LANGUAGE": "fr"}, {"HTTP_ACCEPT_LANGUAGE": "fr"}
    )
    assert "accept-language" in vary(first)
    assert "accept-language" in vary(retry)
    assert retry["Content-Language"] == "fr"


def test_compression_inside_the_decorator_is_replayed_with_its_content_encoding(client):
    gzip_accepted = {"HTTP_ACCEPT_ENCODING": "gzip"}
    first, retry = twice(client, "/compressed/", gzip_accepted, gzip_accepted)
    assert first["Content-Encoding"] == "gzip"
    assert retry.content == first.content
    assert retry["Content-Encoding"] == "gzip"
    assert "accept-encoding" in vary(retry)
    assert json.loads(gzip.decompress(retry.content)) == LONG_BODY
    assert views.executions["compressed"] == 1


@pytest.mark.parametrize("accept", [None, "identity", ""])
def test_a_retry_that_asks_for_no_gzip_gets_the_stored_representation_labelled(client, accept):
    retry_headers = {} if accept is None else {"HTTP_ACCEPT_ENCODING": accept}
    first, retry = twice(client, "/compressed/", {"HTTP_ACCEPT_ENCODING": "gzip"}, retry_headers)
    assert retry.content == first.content
    assert retry["Content-Encoding"] == "gzip"


def test_an_uncompressed_first_response_is_replayed_uncompressed_with_its_vary(client):
    first, retry = twice(client, "/compressed/", {}, {"HTTP_ACCEPT_ENCODING": "gzip"})
    assert "Content-Encoding" not in first
    assert retry.content == first.content
    assert json.loads(retry.content) == LONG_BODY
    assert "Content-Encoding" not in retry
    assert "accept-encoding" in vary(retry)


def test_a_replay_through_gzip_middleware_is_labelled_and_compressed_once(client):
    gzip_accepted = {"HTTP_ACCEPT_ENCODING": "gzip"}
    middleware = ["django.middleware.gzip.GZipMiddleware", *settings.MIDDLEWARE]
    with override_settings(MIDDLEWARE=middleware):
        first, retry = twice(client, "/compressed/", gzip_accepted, gzip_accepted)
    assert retry["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(retry.content)) == LONG_BODY


@pytest.mark.parametrize("depth", [2_000, 30_000])
def test_the_admin_shows_a_deeply_nested_json_body_the_api_served(client, depth):
    url = f"/nested/?depth={depth}"
    first, retry = twice(client, url)
    assert retry.content == first.content == b"[" * depth + b"]" * depth
    body = detail_of(IdempotencyKey.objects.get())
    assert f"{2 * depth} bytes, text, nested too deeply to indent" in body
    assert "[" * depth + "]" * depth in body


def detail_of(record):
    """Return the response half of the admin detail page of ``record``, opened by a superuser."""
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = admin.get(reverse("admin:django_idempotency_idempotencykey_change", args=[record.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    return html[html.index("Response</h2>") :]


def test_the_admin_shows_a_gzip_coded_body_decoded(client):
    first, _ = twice(client, "/compressed/", {"HTTP_ACCEPT_ENCODING": "gzip"})
    record = IdempotencyKey.objects.get()
    assert bytes(record.response_body) == first.content
    decoded = json.dumps(LONG_BODY).encode()
    body = detail_of(record)
    assert f"{len(first.content)} bytes, gzip; {len(decoded)} bytes decoded, JSON" in body
    assert "&quot;tokens&quot;: [\n" in body
