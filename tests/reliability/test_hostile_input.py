"""Hostile input never gets a 500, every rejection is a problem, and no rejection leaves a record.

Arbitrary header values (length, bytes, quoting, repeated headers), bodies, content types and
query strings go to idempotent endpoints through the test client, and a smaller budget through a
real gunicorn with raw HTTP, where headers can repeat and carry any byte.
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
from django.test import Client, override_settings
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from django_idempotency.models import IdempotencyKey
from tests.reliability.hypothesis_profiles import budget
from tests.reliability.server import Reply, Server
from tests.testapp.models import Charge

PROBLEM = "application/problem+json"
#: The plain Django view (every 4xx is the app's own) and the DRF one (DRF may refuse a body).
URLS = ("/raw/", "/echo/")

printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: What a WSGI server can put in a header value: latin-1 characters.
header_values = st.one_of(
    st.text(printable, min_size=1, max_size=40),
    st.text(st.characters(max_codepoint=0xFF), max_size=300),
    st.text(printable, min_size=240, max_size=270),
    st.text(printable, max_size=30).map(lambda value: f'"{value}"'),
    st.lists(st.text(printable, min_size=1, max_size=12), min_size=2, max_size=4).map(", ".join),
)
bodies = st.one_of(
    st.binary(max_size=1500),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.text(max_size=300).map(str.encode),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/octet-stream",
            "",
        ]
    ),
    st.text(printable, max_size=60),
)
query_strings = st.one_of(
    st.just(""),
    st.text(max_size=60).map(lambda text: quote(text, safe="=&")),
    st.text(printable.filter(lambda c: c not in "# "), max_size=60),
)


def assert_problem_body(status: int, content_type: str, body: bytes) -> None:
    assert content_type == PROBLEM, (status, content_type, body[:300])
    problem = json.loads(body)
    assert problem["status"] == status
    assert all(problem.get(field) for field in ("type", "title", "detail")), problem


def assert_rejection_is_explained(url: str, status: int, content_type: str, body: bytes) -> None:
    """A 4xx from the app is a problem; from DRF's own parsers on the DRF view, a DRF error."""
    if url == "/echo/" and content_type == "application/json" and status in (400, 415):
        assert "detail" in json.loads(body), body
        return
    assert_problem_body(status, content_type, body)


def counts() -> tuple[int, int]:
    return IdempotencyKey.objects.count(), Charge.objects.count()


@override_settings(ROOT_URLCONF="tests.reliability.urls")
class TestThroughTheTestClient(TestCase):
    @budget()
    @given(
        url=st.sampled_from(URLS),
        method=st.sampled_from(["POST", "PATCH"]),
        key=st.none() | header_values,
        body=bodies,
        content_type=content_types,
        query=query_strings,
    )
    def test_never_a_500_and_no_record_for_a_rejection(
        self, url, method, key, body, content_type, query
    ):
        before = counts()
        extra = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
        path = f"{url}?{query}" if query else url

        def send():
            return Client().generic(method, path, body, content_type=content_type, **extra)

        response = send()
        status, kind = response.status_code, response.get("Content-Type", "")
        event(f"{url} {status} {'with' if key is not None else 'without'} a key")
        assert status < 500, (status, response.content[:300])
        if status >= 400:
            assert_rejection_is_explained(url, status, kind, response.content)
            assert counts() == before, "a rejected request left a record or a write"
            return
        assert status == 201, response.content
        if key is not None:
            replay = send()
            assert (replay.status_code, replay.content) == (201, response.content)
            assert replay["Idempotent-Replayed"] == "true"
            assert counts() == (before[0] + 1, before[1] + 1)


raw_header_values = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=64).map(str.encode),
    st.binary(max_size=300).filter(lambda value: not set(value) & {0, 10, 13}),
    st.text(printable, min_size=1, max_size=300).map(str.encode),
    st.text(string.ascii_letters, max_size=20).map(lambda value: f'"{value}"'.encode()),
)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
@budget(0.25)
@given(
    url=st.sampled_from(URLS),
    keys=st.lists(raw_header_values, max_size=3),
    header_name=st.sampled_from(["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"]),
    body=bodies,
    content_type=st.none() | st.text(printable, max_size=60).map(str.encode),
    query=query_strings,
)
def test_raw_requests_to_a_live_server(
    server: Server, url, keys, header_name, body, content_type, query
):
    before = counts()
    headers: list[tuple[str, bytes]] = [(header_name, value) for value in keys]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    path = f"{url}?{query}" if query else url
    reply: Reply = server.request("POST", path, body, headers, timeout=20)
    assert reply.status < 500, (reply, server.output()[-3000:])
    kind = reply.headers.get("content-type", "")
    event(f"{url} {reply.status} {len(keys)} key headers")
    if reply.status >= 400:
        if kind.startswith("text/html") and b"Bad Request" in reply.body:
            return  # gunicorn refused the request line or headers before Django saw it
        assert_rejection_is_explained(url, reply.status, kind, reply.body)
        assert counts() == before, "a rejected request left a record or a write"
