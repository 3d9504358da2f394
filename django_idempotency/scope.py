"""Name the scope a key lives in: the authenticated principal plus the method and route."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from django.http import HttpRequest
from rest_framework.settings import api_settings

from django_idempotency.conf import SCOPE_COLUMN_LENGTH

ANONYMOUS_PRINCIPAL = "anonymous"


def principal(request: HttpRequest) -> str | None:
    """Return ``"user:<pk>"`` for an authenticated user, ``None`` for an anonymous request.

    The default ``IDEMPOTENCY_PRINCIPAL``. An API that authenticates callers without setting
    ``request.user`` (API keys, partner tokens) names them with its own principal function,
    for example from DRF's ``request.auth``.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return f"user:{user.pk}"


def route(request: HttpRequest) -> str:
    """Return the URL pattern that matched the request, or its path when none did.

    DRF's format-suffix twin of a pattern (``charges.json``) names the same operation, so the
    suffix and trailing slashes are dropped.
    """
    match = request.resolver_match
    if match is None or not match.route:
        return request.path_info.rstrip("/")
    kwarg = re.escape(api_settings.FORMAT_SUFFIX_KWARG)
    suffix = rf"(\\\.\(\?P<{kwarg}>[^)]*\)/\?\$|<[^<>]*:{kwarg}>)$"
    return re.sub(suffix, "", match.route).rstrip("$").rstrip("/")


def path_without_format(request: HttpRequest) -> str:
    """Return the request's path without a DRF format suffix (``.json``) or trailing slash."""
    path = request.path
    match = request.resolver_match
    suffix = match.kwargs.get(api_settings.FORMAT_SUFFIX_KWARG) if match is not None else None
    if suffix:
        path = re.sub(rf"\.{re.escape(suffix)}/?$", "", path)
    return path.rstrip("/")


def default_scope(
    request: HttpRequest, *, principal: Callable[[HttpRequest], str | None] = principal
) -> str:
    """Return ``"<principal> <METHOD> <route>"``; a request with no principal gets ``anonymous``.

    The engine builds this scope itself when no scope function is configured; it is public for
    scope functions that add to it.
    """
    return compose_scope(
        principal(request) or ANONYMOUS_PRINCIPAL, (request.method or "").upper(), route(request)
    )


def compose_scope(*parts: str) -> str:
    """Return the parts joined by spaces, shortened with a SHA-256 when longer than the column."""
    scope = " ".join(parts)
    if len(scope) <= SCOPE_COLUMN_LENGTH:
        return scope
    digest = hashlib.sha256(scope.encode()).hexdigest()
    return f"{scope[: SCOPE_COLUMN_LENGTH - 72]}~sha256:{digest}"
