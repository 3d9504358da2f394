"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import threading

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.test import Client
from rest_framework.test import APIClient

from django_idempotency.conf import DEFAULT_PROBLEM_TYPE_BASE

TESTER = "tester"
_SIGNING_IN = threading.Lock()


def signed_in_user():
    """Return the tester: the user the signed-in test clients act as, created on first use."""
    users = get_user_model().objects
    try:
        with transaction.atomic():
            return users.get_or_create(username=TESTER)[0]
    except IntegrityError:  # another thread created it first
        return users.get(username=TESTER)


def signed_in_scope(method: str, route: str) -> str:
    """Return the scope of a request by the signed_in_user to ``route`` (its URL pattern)."""
    return f"user:{signed_in_user().pk} {method} {route}"


class SignedInClient(APIClient):
    """DRF's ``APIClient``, authenticated as the tester from its first request (DRF views).

    Keyed requests need a principal (``IDEMPOTENCY_ANONYMOUS`` is ``"reject"`` by default), as
    they have in a real API; tests about anonymous callers use a plain client. A test that
    calls ``force_authenticate`` itself gets DRF's forced authentication alone, which adds no
    query and no session write to the requests under test.
    """

    _signed_in = False

    def force_authenticate(self, user=None, token=None):
        self._signed_in = True
        super().force_authenticate(user, token)

    def request(self, *args, **kwargs):
        # A concurrent burst may send its first requests from many threads: sign in once.
        with _SIGNING_IN:
            if not self._signed_in:
                user = signed_in_user()
                self.force_authenticate(user)
                # Plain Django views read the session; tests that count queries authenticate
                # explicitly and skip this.
                self.force_login(user)
        return super().request(*args, **kwargs)


class SignedInDjangoClient(Client):
    """Django's test ``Client``, logged in as the tester when made (plain views)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.force_login(signed_in_user())


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
