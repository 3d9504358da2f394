"""``IdempotentMixin``: the class adapter over the engine for DRF ``APIView`` and ``ViewSet``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from django_idempotency.core import handle
from django_idempotency.policy import OPTIONS, Policy, generation
from django_idempotency.responses import drf_view
from django_idempotency.scope import default_scope

#: The policy functions a class may replace, and the mixin method that replaces each.
HOOKS = {
    "key": "get_idempotency_key",
    "scope": "get_idempotency_scope",
    "fingerprint": "get_idempotency_fingerprint",
}

#: Per view class: the settings generation, the options' policy, and the policy with hooks.
_CLASS_POLICIES: dict[type, tuple[int, Policy, Policy]] = {}


def _view_hook(method: str) -> Callable[[HttpRequest], Any]:
    """Return a function that calls ``method`` on the DRF view handling the request."""

    def call(request: HttpRequest) -> Any:
        view = drf_view(request)
        return getattr(view, method)(request)

    call.__name__ = method
    return call


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
        """Return the policy for this request: the class's options, settings, and its hooks.

        It is built once per class and settings generation, unless the class computes its
        options per request (overrides ``get_idempotency_options``).
        """
        cls = type(self)
        current = generation()
        cached = _CLASS_POLICIES.get(cls)
        if cached is not None and cached[0] == current:
            self._idempotency_defaults = cached[1]
            return cached[2]
        defaults = Policy.cached(**self.get_idempotency_options())
        # Only the hooks a class overrides replace the policy's own functions; they are called
        # on the view handling the request, so one policy serves every instance.
        policy = defaults.with_hooks(
            **{
                option: _view_hook(method)
                for option, method in HOOKS.items()
                if getattr(cls, method) is not getattr(IdempotentMixin, method)
            }
        )
        if cls.get_idempotency_options is IdempotentMixin.get_idempotency_options:
            _CLASS_POLICIES[cls] = (current, defaults, policy)
        self._idempotency_defaults = defaults
        return policy

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
