"""The admin list's filters, and the expiry rule the list's "expired" column shares with them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_idempotency.conf import conf
from django_idempotency.models import IdempotencyKey, IdempotencyKeyQuerySet

#: Offered by the method filter whatever the settings say; per-view options may add others.
UNSAFE_HTTP_METHODS = ("DELETE", "PATCH", "POST", "PUT")
RESPONSE_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def is_expired(record: IdempotencyKey, now: datetime) -> bool:
    """Return whether ``record`` is among ``IdempotencyKey.objects.expired(now)``."""
    if record.expires_at is None or record.expires_at > now:
        return False
    return record.lease_expires_at is None or record.lease_expires_at <= now


class ResponseClassFilter(admin.SimpleListFilter):
    """Filter by the class of the stored response status, as a range the index serves."""

    title = _("response status class")
    parameter_name = "response_class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """Return one choice per status class."""
        return [(name, name) for name in RESPONSE_CLASSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        """Return the records whose response status lies in the chosen class."""
        value = self.value()
        if value is None:
            return None
        if value not in RESPONSE_CLASSES:
            raise IncorrectLookupParameters(f"Unknown response status class {value!r}.")
        low = int(value[0]) * 100
        narrowed: QuerySet[Any] = queryset.filter(
            response_status__gte=low, response_status__lt=low + 100
        )
        return narrowed


class MethodFilter(admin.SimpleListFilter):
    """Filter by HTTP method, offering the unsafe methods rather than scanning for them."""

    title = _("method")
    parameter_name = "method__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """Return the unsafe HTTP methods and any other method the settings protect."""
        methods = sorted({*UNSAFE_HTTP_METHODS, *(m.upper() for m in conf.METHODS)})
        return [(method, method) for method in methods]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        """Return the records of the chosen method."""
        value = self.value()
        if value is None:
            return None
        narrowed: QuerySet[Any] = queryset.filter(method=value.upper())
        return narrowed


class ExpiredFilter(admin.SimpleListFilter):
    """Filter expired records (those a purge would delete now) from live ones."""

    title = _("expiry")
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        """Return the two choices: expired and live."""
        return [("yes", _("expired")), ("no", _("live"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        """Return the expired or the live records, judged by the project clock."""
        value = self.value()
        if value is None:
            return None
        now = conf.CLOCK()
        if value == "yes":
            return cast(IdempotencyKeyQuerySet, queryset).expired(now)
        if value == "no":
            # The complement of ``expired(now)``, written out so each branch can use an index.
            live: QuerySet[Any] = queryset.filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now) | Q(lease_expires_at__gt=now)
            )
            return live
        raise IncorrectLookupParameters(f"Unknown expiry choice {value!r}.")
