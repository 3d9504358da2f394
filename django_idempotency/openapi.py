"""drf-spectacular integration: document every idempotent operation in the OpenAPI schema.

Set ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "django_idempotency.openapi.AutoSchema"``, or add
:class:`IdempotencySchemaMixin` to a project's own ``AutoSchema`` subclass.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

from django.http import HttpRequest, HttpResponse
from rest_framework.decorators import api_view
from rest_framework.permissions import SAFE_METHODS
from rest_framework.views import APIView

from django_idempotency.conf import ANONYMOUS_REJECT, REPLAY_CONFLICT, conf
from django_idempotency.mixins import IdempotentMixin
from django_idempotency.policy import Policy
from django_idempotency.responses import PROBLEM_CONTENT_TYPE

try:
    from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
    from drf_spectacular.plumbing import ComponentRegistry, ResolvedComponent
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "django_idempotency.openapi needs drf-spectacular; install it with "
        "`pip install 'django-idempotency[openapi]'`."
    ) from error

Operation = dict[str, Any]

#: Name of the schema component every idempotency problem response refers to.
PROBLEM_COMPONENT = "IdempotencyProblem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem detail, sent as application/problem+json.",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}


def _probe(request: HttpRequest) -> HttpResponse:  # pragma: no cover - never called
    return HttpResponse()


@functools.cache
def _api_view_code() -> object:
    """Return the code object of the handler that ``@api_view`` builds around a function."""
    wrapped_view: Any = api_view(["POST"])(_probe)
    return wrapped_view.cls.post.__code__


def decorator_options(function: object) -> dict[str, Any] | None:
    """Return the ``@idempotent`` options of ``function``, or ``None`` when it is not decorated."""
    options = getattr(function, "idempotency_options", None)
    return None if options is None else dict(options)


def view_handler(view: APIView, method: str) -> Callable[..., Any] | None:
    """Return the function that handles ``method`` on ``view``: the action, method or function view."""
    action = getattr(view, "action", None)
    handler = getattr(view, action, None) if isinstance(action, str) else None
    if handler is None:
        handler = getattr(view, method.lower(), None)
    function = getattr(handler, "__func__", handler)
    if getattr(function, "__code__", None) is _api_view_code():
        # @api_view's handler calls the decorated function it closes over.
        inner: Callable[..., Any] = inspect.getclosurevars(cast(Any, function)).nonlocals["func"]
        return inner
    return handler


def view_policy(view: APIView, method: str) -> Policy | None:
    """Return the policy protecting ``method`` on ``view``, or ``None`` when it is not idempotent."""
    method = method.upper()
    if method in SAFE_METHODS or not conf.ENABLED:
        return None
    if isinstance(view, IdempotentMixin):
        policy = view.get_idempotency_policy()
    else:
        options = decorator_options(view_handler(view, method))
        if options is None:
            return None
        policy = Policy.cached(**options)
    return policy if method in policy.methods else None


def document(operation: Operation, policy: Policy, registry: ComponentRegistry) -> Operation:
    """Add the key header, the replay header and the problem responses to ``operation``; return it."""
    header = conf.HEADER
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    if not any(
        p.get("in") == "header" and p.get("name", "").lower() == header.lower() for p in parameters
    ):
        parameters.append(
            {
                "in": "header",
                "name": header,
                "required": policy.required,
                "description": (
                    "A unique key per logical operation; retries of that operation send the same "
                    "key and get the first response back instead of running it again."
                ),
                "schema": {
                    "type": "string",
                    "minLength": conf.KEY_MIN_LENGTH,
                    "maxLength": conf.KEY_MAX_LENGTH,
                },
            }
        )
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if policy.replay != REPLAY_CONFLICT:
        for code, response in responses.items():
            if code.isdigit() and int(code) in policy.store_statuses:
                response.setdefault("headers", {})[policy.replayed_header] = {
                    "description": "Present on a replay: this response was stored for the key.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
    registry.register_on_missing(
        ResolvedComponent(  # type: ignore[no-untyped-call]
            name=PROBLEM_COMPONENT,
            type=ResolvedComponent.SCHEMA,
            object=PROBLEM_COMPONENT,
            schema=PROBLEM_SCHEMA,
        )
    )
    problem = {"schema": {"$ref": f"#/components/schemas/{PROBLEM_COMPONENT}"}}
    for status, description in problems(policy).items():
        response = responses.setdefault(str(status), {"description": ""})
        response["description"] = " ".join(filter(None, [response["description"], description]))
        response.setdefault("content", {}).setdefault(PROBLEM_CONTENT_TYPE, problem)
        if status == policy.in_progress_status:
            response.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
    return operation


def problems(policy: Policy) -> dict[int, str]:
    """Return the problem responses ``policy`` can answer with: status to description."""
    found: dict[int, list[str]] = {
        400: [
            "The Idempotency-Key header is invalid" + (" or missing." if policy.required else ".")
        ]
    }
    found.setdefault(policy.in_progress_status, []).append(
        "A request with this key is still in progress (retry after Retry-After), or it was "
        "already processed and its response is not kept for replay."
    )
    found.setdefault(policy.mismatch_status, []).append(
        "The key was already used with a different payload."
    )
    if policy.anonymous == ANONYMOUS_REJECT:
        found.setdefault(403, []).append("Anonymous requests may not send an Idempotency-Key.")
    return {status: " ".join(texts) for status, texts in sorted(found.items())}


class IdempotencySchemaMixin:
    """Add to an ``AutoSchema`` subclass so every idempotent operation documents the protocol."""

    view: APIView

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> Operation | None:
        """Return drf-spectacular's operation, documented as idempotent where the view is."""
        operation: Operation | None = super().get_operation(  # type: ignore[misc]
            path, path_regex, path_prefix, method, registry
        )
        if operation is None:
            return None
        policy = view_policy(self.view, method)
        return operation if policy is None else document(operation, policy, registry)


class AutoSchema(IdempotencySchemaMixin, SpectacularAutoSchema):
    """drf-spectacular's ``AutoSchema`` that documents every idempotent operation."""
