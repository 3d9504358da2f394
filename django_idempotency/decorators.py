"""``@idempotent``: the decorator adapter over the engine."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from django_idempotency.core import handle
from django_idempotency.policy import Policy, check_options, generation

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from django_idempotency.policy import Options

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponseBase])

USAGE = """Use it on the view function itself, below @api_view:

    @api_view(["POST"])
    @idempotent(required=True)
    def create_charge(request): ...

or on an APIView / ViewSet method (or @action):

    class ChargeViewSet(viewsets.ModelViewSet):
        @idempotent
        def create(self, request, *args, **kwargs): ...

or use IdempotentMixin on the class.
See https://django-idempotency.readthedocs.io/en/latest/usage/"""


@overload
def idempotent(function: ViewFunc, /) -> ViewFunc: ...
@overload
def idempotent(
    function: None = None, /, **options: Unpack[Options]
) -> Callable[[ViewFunc], ViewFunc]: ...
def idempotent(
    function: ViewFunc | None = None, /, **options: Any
) -> ViewFunc | Callable[[ViewFunc], ViewFunc]:
    """Make a view safe to retry with an ``Idempotency-Key``; usable bare or with keyword options.

    Returns the decorated view. Options not given fall back to the ``IDEMPOTENCY_*`` settings.
    """
    check_options(options)

    def decorator(view_func: ViewFunc) -> ViewFunc:
        check_target(view_func)
        # This view's policy and the settings generation it was built for.
        built: list[Any] = [None, -1]

        def policy() -> Policy:
            current = generation()
            if built[1] != current:
                built[:] = [Policy.cached(**options), current]
            found: Policy = built[0]
            return found

        @functools.wraps(view_func)
        def wrapper(*args: Any, **kwargs: Any) -> HttpResponseBase:
            request = find_request(view_func, args)
            return handle(request, lambda: view_func(*args, **kwargs), policy())

        # Read by integrations (the OpenAPI extension) to tell idempotent handlers apart.
        wrapper.idempotency_options = dict(options)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    if function is None:
        return decorator
    return decorator(function)


def check_target(view_func: object) -> None:
    """Raise ``TypeError`` with the right usage when ``view_func`` is not something we can wrap."""
    name = getattr(view_func, "__qualname__", repr(view_func))
    if isinstance(view_func, type):
        raise TypeError(
            f"@idempotent cannot decorate the class {name}; add IdempotentMixin to it instead.\n\n{USAGE}"
        )
    view_class = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
    if isinstance(view_class, type) and issubclass(view_class, APIView):
        raise TypeError(
            f"@idempotent is above @api_view (or wraps as_view()) on {name}: it would run before "
            f"DRF authentication, permissions and throttling.\n\n{USAGE}"
        )
    if inspect.iscoroutinefunction(view_func):
        raise TypeError(
            f"@idempotent does not support async views ({name}); use a sync view.\n\n{USAGE}"
        )
    if not callable(view_func):
        raise TypeError(f"@idempotent decorates views, not {view_func!r}.\n\n{USAGE}")


def find_request(view_func: object, args: tuple[Any, ...]) -> HttpRequest:
    """Return the request among a view's first two arguments (the second follows ``self``)."""
    for candidate in args[:2]:
        if isinstance(candidate, (HttpRequest, Request)):
            return candidate
    name = getattr(view_func, "__qualname__", repr(view_func))
    raise TypeError(f"@idempotent found no request among the arguments of {name}.\n\n{USAGE}")
