"""``IdempotentMixin``: the class adapter over the engine for DRF ``APIView`` and ``ViewSet``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from django_idempotency.core import handle
from django_idempotency.policy import OPTIONS, Policy
from django_idempotency.scope import default_scope


class IdempotentMixin:
    """Make a DRF view's unsafe handlers idempotent; options are ``idempotency_<option>`` attributes.

    Every attribute left ``None`` takes its ``IDEMPOTENCY_*`` setting when the request arrives.
    The handler is wrapped after DRF's authentication, permission and throttle checks.
    """

    idempotency_methods: Collection[str] | None = None
    idempotency_required: bool | None = None
    idempotency_ttl: timedelta | int | float | None = None
    idempotency_store_statuses: Collection[int] | None = None
    idempotency_lock_timeout: float | None = None
    idempotency_retry_after: int | None = None
    idempotency_mismatch_status: int | None = None
    idempotency_in_progress_status: int | None = None
    idempotency_replay: str | None = None
    idempotency_max_body_size: int | None = None
    idempotency_anonymous: str | None = None
    idempotency_principal: Callable[[HttpRequest], str | None] | str | None = None
    idempotency_mode: str | None = None
    idempotency_store: str | None = None
    idempotency_lease: timedelta | int | float | None = None
    idempotency_wait: float | None = None
    idempotency_fail_open: bool | None = None
    idempotency_heartbeat: bool | None = None
    idempotency_scope: Callable[[HttpRequest], str] | str | None = None
    idempotency_fingerprint: Callable[..., str] | str | bool | None = None
    idempotency_fingerprint_include: Collection[str] | None = None
    idempotency_fingerprint_exclude: Collection[str] | None = None
    idempotency_key_validator: Callable[[str], object] | str | None = None
    idempotency_redact: Callable[..., Any] | str | None = None
    idempotency_error_response: Callable[..., HttpResponseBase] | str | None = None

    def get_idempotency_options(self) -> dict[str, Any]:
        """Return the options set on this class (attributes that are not ``None``)."""
        values = {name: getattr(self, f"idempotency_{name}") for name in OPTIONS}
        return {name: value for name, value in values.items() if value is not None}

    def get_idempotency_policy(self) -> Policy:
        """Return the policy for this request: the class's options, settings, and this view's hooks."""
        self._idempotency_defaults = Policy.cached(**self.get_idempotency_options())
        # Only the hooks a class overrides replace the policy's own functions.
        cls = type(self)
        return self._idempotency_defaults.with_hooks(
            key=self.get_idempotency_key
            if cls.get_idempotency_key is not IdempotentMixin.get_idempotency_key
            else None,
            scope=self.get_idempotency_scope
            if cls.get_idempotency_scope is not IdempotentMixin.get_idempotency_scope
            else None,
            fingerprint=self.get_idempotency_fingerprint
            if cls.get_idempotency_fingerprint is not IdempotentMixin.get_idempotency_fingerprint
            else None,
        )

    def get_idempotency_key(self, request: HttpRequest) -> str | None:
        """Return the request's idempotency key, or ``None`` when it sends none."""
        return self._idempotency_defaults.key(request)

    def get_idempotency_scope(self, request: HttpRequest) -> str:
        """Return the scope the key lives in (by default: principal, method and route)."""
        policy = self._idempotency_defaults
        if policy.scope is not None:
            return policy.scope(request)
        return default_scope(request, principal=policy.principal)

    def get_idempotency_fingerprint(self, request: HttpRequest) -> str:
        """Return the fingerprint of the request's payload."""
        fingerprint = self._idempotency_defaults.fingerprint
        return "" if fingerprint is None else fingerprint(request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Run DRF's checks, then route this request's handler through the engine."""
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        method = (request.method or "").lower()
        handler = getattr(self, method, None)
        if (
            handler is None
            or request.method in SAFE_METHODS
            or method not in self.http_method_names  # type: ignore[attr-defined]
        ):
            return
        policy = self.get_idempotency_policy()

        def idempotent_handler(request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return handle(request, lambda: handler(request, *args, **kwargs), policy)

        # DRF looks the handler up on the instance after initial(); ViewSets bind actions the same way.
        setattr(self, method, idempotent_handler)
