"""The read-only admin for key records: browse, purge expired records, release stuck keys."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, tzinfo
from email.message import Message
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_idempotency.conf import conf
from django_idempotency.models import IdempotencyKey, IdempotencyKeyQuerySet
from django_idempotency.stores.base import IN_PROGRESS

logger = logging.getLogger("django_idempotency")

#: Bodies longer than this are cut for display; the page states the full size.
BODY_DISPLAY_LIMIT = 64 * 1024
#: How many leading bytes of a binary body are shown in hex.
HEX_PREVIEW_BYTES = 64

if TYPE_CHECKING:
    from django.db.models.expressions import Combinable

    ModelAdmin = admin.ModelAdmin[IdempotencyKey]
    PaginatorBase = Paginator[IdempotencyKey]
    Ordering = list[str | Combinable] | tuple[str | Combinable, ...] | tuple[()]
else:
    # Both are generic only in django-stubs; at run time they take no parameter.
    ModelAdmin = admin.ModelAdmin
    PaginatorBase = Paginator

#: The list counts at most this many matching records, then says "more than".
COUNT_CAP = 1000

#: Offered by the method filter whatever the settings say; per-view options may add others.
UNSAFE_HTTP_METHODS = ("DELETE", "PATCH", "POST", "PUT")
RESPONSE_CLASSES = ("2xx", "3xx", "4xx", "5xx")
#: Characters that mark a body as binary even when it decodes.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def is_expired(record: IdempotencyKey, now: datetime) -> bool:
    """Return whether ``record`` is among ``IdempotencyKey.objects.expired(now)``."""
    if record.expires_at is None or record.expires_at > now:
        return False
    return record.lease_expires_at is None or record.lease_expires_at <= now


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


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ModelAdmin):
    """Read-only list and detail pages, plus the purge and release actions."""

    list_display = (
        "key",
        "scope",
        "method",
        "path",
        "state",
        "response_status",
        "created_at",
        "completed_at",
        "expires_at",
        "expired",
    )
    list_filter = ("status", MethodFilter, ResponseClassFilter, ExpiredFilter)
    search_fields = ("key", "scope", "path")
    search_help_text = _(
        "An exact key, the start of a scope (user:42) or the start of a path (/api/charges/)."
    )
    sortable_by = ("created_at", "expires_at")
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    paginator = CappedPaginator
    actions = ("purge_expired", "release_selected")
    delete_selected_confirmation_template = (
        "admin/django_idempotency/idempotencykey/release_selected_confirmation.html"
    )
    fieldsets = (
        (
            _("Request"),
            {"fields": ("scope", "key", "method", "path", "fingerprint", "created_at")},
        ),
        (
            _("Response"),
            {
                "fields": (
                    "state",
                    "response_status",
                    "completed_at",
                    "expires_at",
                    "lease_expires_at",
                    "fencing_token",
                    "headers",
                    "body",
                )
            },
        ),
    )
    readonly_fields = (
        "scope",
        "key",
        "method",
        "path",
        "fingerprint",
        "created_at",
        "state",
        "response_status",
        "completed_at",
        "expires_at",
        "lease_expires_at",
        "fencing_token",
        "headers",
        "body",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdempotencyKey]:
        """Return the records without their bodies, which only the detail page loads."""
        records: QuerySet[IdempotencyKey] = ChangeListQuerySet(self.model).defer("response_body")
        ordering = self.get_ordering(request)
        return records.order_by(*ordering) if ordering else records

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        """Return the list, without the date hierarchy while it is filtered by expiry.

        No index orders expired (or live) records by creation, so the date range of the
        filtered records would cost a scan of the table.
        """
        changelist = super().get_changelist_instance(request)
        if ExpiredFilter.parameter_name in request.GET:
            changelist.date_hierarchy = None
        return changelist

    def get_ordering(self, request: HttpRequest) -> Ordering:
        """Return the default order: newest first, but expired records by expiry.

        Expired records are the oldest, so reading them newest-first would skip every live
        record; their expiry index hands them over in order.
        """
        if request.GET.get(ExpiredFilter.parameter_name) == "yes":
            return ("-expires_at",)
        return super().get_ordering(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyKey], search_term: str
    ) -> tuple[QuerySet[IdempotencyKey], bool]:
        """Return the records matching the whole term, by lookups the indexes can serve.

        A term starting with ``/`` is the start of a path; one with a space or a colon is the
        start of a scope (``user:42 POST``); any other is a key or a scope, matched exactly.
        A key is always matched exactly, so a key search is one index lookup.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("/"):
            other = Q(path__startswith=term)
        elif " " in term or ":" in term:
            other = Q(scope__startswith=term)
        else:
            other = Q(scope=term)
        return queryset.filter(Q(key=term) | other), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Return False: records are written only by the engine."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Return False: a stored response is evidence, not data to edit."""
        return False

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        """Return the actions without Django's generic delete, which release replaces."""
        # Django 6.1 passes where the actions are shown; Django 5.2 and 6.0 do not know it.
        if action_location is None:
            actions = super().get_actions(request)
        else:
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[call-arg]
        actions.pop("delete_selected", None)
        return actions

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Return the list page; the purge action runs even when no row is selected."""
        if (
            request.method == "POST"
            and "index" in request.POST
            and request.POST.get("action") == "purge_expired"
            and not request.POST.getlist(ACTION_CHECKBOX_NAME)
            and self.has_view_permission(request)
            and "purge_expired" in self.get_actions(request)
        ):
            self.purge_expired(request, self.get_queryset(request))
            return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Return the detail page, without a delete link: keys are released from the list."""
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "show_delete": False}
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Refuse: a key is released through the "Release selected keys" action only."""
        raise PermissionDenied

    @admin.action(description=_("Purge expired keys"), permissions=["delete"])
    def purge_expired(self, request: HttpRequest, queryset: QuerySet[IdempotencyKey]) -> None:
        """Delete every expired record, whatever the selection, and report how many."""
        count = IdempotencyKey.objects.purge_expired()
        logger.info(
            "Admin user %s purged %d expired idempotency keys.", request.user.get_username(), count
        )
        if count:
            message = ngettext(
                "Purged %(count)d expired idempotency key.",
                "Purged %(count)d expired idempotency keys.",
                count,
            ) % {"count": count}
            self.message_user(request, message, messages.SUCCESS)
        else:
            self.message_user(request, _("No expired idempotency keys."), messages.INFO)

    @admin.action(description=_("Release selected keys"), permissions=["delete"])
    def release_selected(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyKey]
    ) -> HttpResponse | None:
        """Return Django's delete confirmation page for the selection, then delete it."""
        response: HttpResponse | None = delete_selected(self, request, queryset)
        return response

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[IdempotencyKey]) -> None:
        """Delete the released records and log how many, never their keys."""
        count, _per_model = queryset.delete()
        logger.info(
            "Admin user %s released %d idempotency keys.", request.user.get_username(), count
        )

    @admin.display(description=_("status"), ordering="status")
    def state(self, record: IdempotencyKey) -> str:
        """Return the status, flagging an unfinished claim whose lease has passed."""
        label = str(record.get_status_display())
        lease = record.lease_expires_at
        if record.status == IN_PROGRESS and lease and lease <= conf.CLOCK():
            return str(_("%(status)s (lease expired)") % {"status": label})
        return label

    @admin.display(description=_("expired"), boolean=True)
    def expired(self, record: IdempotencyKey) -> bool:
        """Return whether a purge run now would delete the record."""
        return is_expired(record, conf.CLOCK())

    @admin.display(description=_("response headers"))
    def headers(self, record: IdempotencyKey) -> SafeString:
        """Return the stored headers as an HTML table."""
        rows = [(str(name), str(value)) for name, value in record.response_headers or []]
        if not rows:
            return format_html("<em>{}</em>", _("none"))
        body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        return format_html('<table class="idempotency-headers">{}</table>', body)

    @admin.display(description=_("response body"))
    def body(self, record: IdempotencyKey) -> SafeString:
        """Return the stored body for reading: JSON indented, text as text, binary in hex."""
        if record.response_body is None:
            if record.status == IN_PROGRESS:
                reason = _("not kept yet: the first request has not finished.")
            else:
                reason = _(
                    "not kept: the response was streamed, larger than IDEMPOTENCY_MAX_BODY_SIZE, "
                    'or its view stores no body (replay="conflict" or a redaction hook). '
                    "Retries get 409 already processed."
                )
            return format_html("<em>{}</em>", reason)
        data = bytes(record.response_body)
        return render_body(data, content_type(record))


def content_type(record: IdempotencyKey) -> Message:
    """Return the record's ``Content-Type`` header parsed, empty when it has none."""
    parsed = Message()
    for name, value in record.response_headers or []:
        if str(name).lower() == "content-type":
            parsed["Content-Type"] = str(value)
    return parsed


def render_body(data: bytes, header: Message) -> SafeString:
    """Return ``data`` as HTML: its size, then JSON, text or a hex preview, cut at the limit."""
    size = len(data)
    shown = data[:BODY_DISPLAY_LIMIT]
    if size > BODY_DISPLAY_LIMIT:
        note = _("%(size)d bytes, the first %(shown)d shown") % {
            "size": size,
            "shown": BODY_DISPLAY_LIMIT,
        }
    else:
        note = _("%(size)d bytes") % {"size": size}
    text = decode_text(shown, header, cut=size > BODY_DISPLAY_LIMIT)
    if text is None:
        hex_preview = data[:HEX_PREVIEW_BYTES].hex(" ")
        more = "…" if size > HEX_PREVIEW_BYTES else ""
        return format_html(
            '<p>{}, {}</p><pre class="idempotency-body">{}{}</pre>',
            note,
            _("binary"),
            hex_preview,
            more,
        )
    kind = _("text")
    looks_json = text.lstrip()[:1] in ("{", "[")
    if size <= BODY_DISPLAY_LIMIT and ("json" in header.get_content_type() or looks_json):
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            kind = _("JSON")
        except ValueError:
            pass
    return format_html('<p>{}, {}</p><pre class="idempotency-body">{}</pre>', note, kind, text)


def decode_text(data: bytes, header: Message, *, cut: bool) -> str | None:
    """Return ``data`` decoded with the header's charset (UTF-8 by default), or None if binary."""
    charset = header.get_content_charset() or "utf-8"
    # A cut body may end inside a multi-byte character: up to three trailing bytes may go.
    for drop in range(4 if cut else 1):
        try:
            text = data[: len(data) - drop].decode(charset)
        except LookupError:
            return None
        except UnicodeDecodeError:
            continue
        return None if CONTROL_CHARACTERS.search(text) else text
    return None
