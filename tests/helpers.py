"""Small helpers shared by the tests."""

from __future__ import annotations

import json

from django_idempotency.conf import DEFAULT_PROBLEM_TYPE_BASE


def post(client, url, data=None, *, key=None, method="post", fmt="json", **extra):
    """Send ``data`` as JSON with an ``Idempotency-Key`` header when ``key`` is given."""
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return getattr(client, method)(url, data if data is not None else {}, format=fmt, **extra)


def assert_problem(response, status, slug):
    """Assert ``response`` is an RFC 9457 problem of the given status and type; return its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["type"] == DEFAULT_PROBLEM_TYPE_BASE + slug
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body
