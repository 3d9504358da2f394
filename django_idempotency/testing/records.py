"""Key records in any state, and the scope and fingerprint a request would have."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.test import RequestFactory
from django.urls import Resolver404, resolve

from django_idempotency.conf import conf
from django_idempotency.core import fingerprint_for as engine_fingerprint
from django_idempotency.models import IdempotencyKey
from django_idempotency.policy import Policy
from django_idempotency.scope import compose_scope, default_scope

#: The states :func:`make_key_record` can create.
COMPLETED = "completed"
IN_PROGRESS = "in_progress"
EXPIRED = "expired"
STALE_LEASE = "stale_lease"
STATES = (COMPLETED, IN_PROGRESS, EXPIRED, STALE_LEASE)


def encode_body(data: Any, content_type: str) -> Any:
    """Return ``data`` as a JSON body for a JSON content type, else unchanged for the client."""
    if content_type.split(";")[0].strip().endswith("json") and not isinstance(data, (str, bytes)):
        return json.dumps({} if data is None else data)
    return data


def _request(method: str, path: str, data: Any = None, content_type: str = "") -> HttpRequest:
    """Return a request for ``path`` as the engine would see it, resolved against the URLconf."""
    body = encode_body(data, content_type) if data is not None else ""
    request = RequestFactory().generic(method.upper(), path, body, content_type)
    try:
        request.resolver_match = resolve(request.path_info)
    except Resolver404:
        request.resolver_match = None
    return request


def scope_for(method: str, path: str, *, user: Any = None) -> str:
    """Return the scope a request to ``path`` by ``user`` lives in, per ``IDEMPOTENCY_SCOPE``."""
    request = _request(method, path)
    request.user = user if user is not None else AnonymousUser()
    # As the engine stores it: a scope longer than its column is kept as its digest.
    scope = conf.SCOPE
    if scope is default_scope:
        return default_scope(request, principal=conf.PRINCIPAL)
    return compose_scope(scope(request))


def fingerprint_for(
    method: str,
    path: str,
    data: Any,
    *,
    content_type: str = "application/json",
    **options: Any,
) -> str:
    """Return the fingerprint of a request sending ``data`` to ``path``; ``""`` when it is off.

    ``options`` are the view's fingerprint options (``fingerprint``, ``fingerprint_include``,
    ``fingerprint_exclude``), as given to ``@idempotent``.
    """
    return engine_fingerprint(_request(method, path, data, content_type), Policy.cached(**options))


def make_key_record(
    state: str = COMPLETED,
    *,
    key: str | None = None,
    method: str = "POST",
    path: str = "/",
    user: Any = None,
    data: Any = None,
    now: datetime | None = None,
    **fields: Any,
) -> IdempotencyKey:
    """Create and return a key record in ``state`` (one of :data:`STATES`) for ``path``.

    The scope is the one a request by ``user`` to ``path`` would have, and the fingerprint that
    of a JSON request sending ``data`` (empty when ``data`` is ``None``). ``fields`` override any
    column (``scope``, ``fingerprint``, ``response_status``, ``response_body``, ...).
    """
    if state not in STATES:
        raise ValueError(f"Unknown key record state {state!r}; choose one of {STATES}.")
    now = conf.CLOCK() if now is None else now
    created = now - conf.TTL - timedelta(hours=1) if state == EXPIRED else now
    values: dict[str, Any] = {
        "key": uuid.uuid4().hex if key is None else key,
        "method": method.upper(),
        "path": path,
        "created_at": created,
    }
    if state in (IN_PROGRESS, STALE_LEASE):
        lease = conf.LEASE if state == IN_PROGRESS else -conf.LEASE
        values |= {
            "status": IdempotencyKey.Status.IN_PROGRESS,
            "expires_at": created + conf.TTL,
            "lease_expires_at": now + lease,
            "fencing_token": 1,
        }
    else:
        values |= {
            "status": IdempotencyKey.Status.COMPLETED,
            "response_status": 201,
            "response_headers": [["Content-Type", "application/json"]],
            "response_body": b"{}",
            "completed_at": created,
            "expires_at": created + conf.TTL,
        }
    values |= fields
    if "scope" not in values:
        values["scope"] = scope_for(method, path, user=user)
    if "fingerprint" not in values:
        values["fingerprint"] = "" if data is None else fingerprint_for(method, path, data)
    record: IdempotencyKey = IdempotencyKey.objects.create(**values)
    return record
