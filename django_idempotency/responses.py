"""Responses the app builds: RFC 9457 problems, captured copies of responses, and replays."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from django_idempotency.conf import REPLAY_CONFLICT, conf
from django_idempotency.exceptions import AlreadyProcessed, IdempotencyError
from django_idempotency.stores.base import StoredResponse

if TYPE_CHECKING:
    from django_idempotency.policy import Policy

logger = logging.getLogger("django_idempotency")

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(error: IdempotencyError) -> dict[str, object]:
    """Return the RFC 9457 members for ``error``: type, title, status, detail, code and extensions."""
    return {
        "type": conf.PROBLEM_TYPE_BASE + error.problem_slug,
        "title": str(error.title),
        "status": error.status_code,
        "detail": str(error.detail),
        "code": error.default_code,
        **error.extensions,
    }


def problem_response(request: HttpRequest, error: IdempotencyError) -> HttpResponse:
    """Return ``error`` as an ``application/problem+json`` response (the default error factory)."""
    response = HttpResponse(
        json.dumps(problem_body(error)),
        status=error.status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


def error_response(request: HttpRequest, error: IdempotencyError) -> HttpResponseBase:
    """Return the answer to ``error``: the project's DRF exception handler's, else a problem response.

    In a DRF view whose project configured its own ``EXCEPTION_HANDLER``, that handler renders
    the error (its ``detail`` is the problem object), so error bodies stay uniform across the
    API. DRF's default handler and plain Django views get :func:`problem_response`.
    """
    view = drf_view(request)
    if view is not None:
        handler = view.get_exception_handler()
        if handler is not drf_exception_handler:
            error.detail = problem_body(error)  # type: ignore[assignment]
            response: HttpResponseBase | None = handler(error, view.get_exception_handler_context())
            if response is not None:
                for name, value in error.headers.items():
                    response.setdefault(name, value)
                return response
    return problem_response(request, error)


def drf_view(request: HttpRequest) -> APIView | None:
    """Return the DRF view handling ``request``, or ``None`` for a plain Django request."""
    if not isinstance(request, Request):
        return None
    view: APIView | None = request.parser_context.get("view")
    return view


def capture(response: HttpResponseBase, policy: Policy) -> StoredResponse | None:
    """Return the copy of ``response`` to store, or ``None`` when its status is not stored.

    Streamed, oversized and ``replay="conflict"`` responses keep their status and headers but no
    body; their duplicates are answered with "already processed".
    """
    if response.status_code not in policy.store_statuses:
        return None
    headers = tuple(
        (name, value) for name, value in response.items() if name.lower() in policy.replay_headers
    )
    body: bytes | None = None
    if policy.replay != REPLAY_CONFLICT and not response.streaming:
        content = response.content  # type: ignore[attr-defined]
        body = content if len(content) <= policy.max_body_size else None
    stored = StoredResponse(response.status_code, headers, body)
    if policy.redact is None or body is None:
        return stored
    try:
        redacted: StoredResponse = policy.redact(stored)
    except Exception:
        # The client still gets its response; only the replayable copy is given up.
        logger.exception("The redaction hook failed; the response is stored without a body.")
        return replace(stored, body=None)
    return redacted


def replay(stored: StoredResponse, policy: Policy) -> HttpResponse:
    """Return the stored response again: same status, allow-listed headers, the same bytes."""
    if stored.body is None:
        location = stored.header("Location")
        raise AlreadyProcessed(
            headers={"Location": location} if location else None,
            # An unreadable record may not know its status: 0 is left out.
            extensions={"original_status": stored.status} if stored.status else {},
        )
    response = HttpResponse(stored.body, status=stored.status)
    if stored.header("Content-Type") is None:
        del response["Content-Type"]
    for name, value in stored.headers:
        if name.lower() in policy.replay_headers:
            response[name] = value
    response[policy.replayed_header] = "true"
    return response
