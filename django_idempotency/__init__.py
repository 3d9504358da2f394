"""Idempotency-Key support for Django and Django REST framework."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = ["IdempotentMixin", "__version__", "idempotent"]

if TYPE_CHECKING:
    from django_idempotency.decorators import idempotent
    from django_idempotency.mixins import IdempotentMixin


def __getattr__(name: str) -> Any:
    """Return the public names lazily, so importing the package never imports Django."""
    if name == "idempotent":
        from django_idempotency.decorators import idempotent

        return idempotent
    if name == "IdempotentMixin":
        from django_idempotency.mixins import IdempotentMixin

        return IdempotentMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
