"""The admin list's queries: a capped count and a date hierarchy served by the indexes."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, cast

from django.core.paginator import Paginator
from django.db.models import Max, Min, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

from django_idempotency.models import IdempotencyKey, IdempotencyKeyQuerySet

if TYPE_CHECKING:
    PaginatorBase = Paginator[IdempotencyKey]
else:
    # Generic only in django-stubs; at run time it takes no parameter.
    PaginatorBase = Paginator

#: The list counts at most this many matching records, then says "more than".
COUNT_CAP = 1000


class CappedPaginator(PaginatorBase):
    """Paginate by counting at most ``COUNT_CAP + 1`` rows, never a whole large table."""

    @cached_property
    def count(self) -> int:
        """Return the number of records, or ``COUNT_CAP + 1`` when there are more."""
        records = cast("QuerySet[IdempotencyKey]", self.object_list)
        return int(records[: COUNT_CAP + 1].count())

    @property
    def capped(self) -> bool:
        """Return whether there are more records than were counted."""
        return self.count > COUNT_CAP


class ChangeListQuerySet(IdempotencyKeyQuerySet):
    """The admin's queries; its ``datetimes()`` serves the date hierarchy from the indexes."""

    def datetimes(  # type: ignore[override]
        self, field_name: str, kind: str, order: str = "ASC", tzinfo: tzinfo | None = None
    ) -> list[datetime]:
        """Return the start of each year, month or day that holds a record, in order.

        Django's own ``datetimes()`` truncates every matching row (``SELECT DISTINCT``), a full
        scan of a large table; here each period between the first and the last record is
        probed with one indexed single-row query instead.
        """
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        first, last = (
            timezone.localtime(value, zone) if timezone.is_aware(value) else value
            for value in (bounds["first"], bounds["last"])
        )
        start = truncate(first, kind)
        periods = []
        while start <= last:
            end = next_period(start, kind)
            in_period = {f"{field_name}__gte": start, f"{field_name}__lt": end}
            # Ordered, so the database walks an index rather than the table from its start.
            if self.filter(**in_period).order_by(field_name).values_list("pk")[:1]:
                periods.append(start)
            start = end
        return periods if order == "ASC" else periods[::-1]


def truncate(moment: datetime, kind: str) -> datetime:
    """Return the start of the year, month or day holding ``moment``, in its time zone."""
    # zoneinfo offsets follow the wall clock, so replace() and + stay right across DST.
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("year", "month"):
        moment = moment.replace(day=1)
    if kind == "year":
        moment = moment.replace(month=1)
    return moment


def next_period(start: datetime, kind: str) -> datetime:
    """Return the start of the year, month or day after the one starting at ``start``."""
    if kind == "year":
        return start.replace(year=start.year + 1)
    if kind == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)
