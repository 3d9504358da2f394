"""The read-only admin for key records: browse, purge expired records, release stuck keys.

The admin is split by concept: ``filters`` (the list filters), ``changelist`` (the list's
queries and paginator) and ``display`` (how a stored body is shown); this module holds the
``ModelAdmin`` and registers it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.views.main import ChangeList
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_idempotency.admin.changelist import CappedPaginator, ChangeListQuerySet
from django_idempotency.admin.display import BODY_DISPLAY_LIMIT, content_type, render_body
from django_idempotency.admin.filters import (
    ExpiredFilter,
    MethodFilter,
    ResponseClassFilter,
    is_expired,
)
from django_idempotency.conf import conf
from django_idempotency.events import key_hash
from django_idempotency.models import IdempotencyKey
from django_idempotency.stores.base import IN_PROGRESS

__all__ = ["BODY_DISPLAY_LIMIT", "IdempotencyKeyAdmin", "logged_name"]

logger = logging.getLogger("django_idempotency")

if TYPE_CHECKING:
    from django.db.models.expressions import Combinable

    ModelAdmin = admin.ModelAdmin[IdempotencyKey]
    Ordering = list[str | Combinable] | tuple[str | Combinable, ...] | tuple[()]
else:
    # Generic only in django-stubs; at run time it takes no parameter.
    ModelAdmin = admin.ModelAdmin


#: The detail page's two groups: what the first request sent, and what became of it.
REQUEST_FIELDS = ("scope", "key", "method", "path", "fingerprint", "created_at")
RESPONSE_FIELDS = (
    "state",
    "response_status",
    "completed_at",
    "expires_at",
    "lease_expires_at",
    "fencing_token",
    "headers",
    "body",
)


#: Django's limit on ``LogEntry.object_repr``.
LOG_REPR_LENGTH = 200


def logged_name(record: IdempotencyKey) -> str:
    """Return how the admin history names ``record``: its key's short SHA-256 and its scope."""
    return f"key sha256:{key_hash(record.key)} in {record.scope}"[:LOG_REPR_LENGTH]


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
        (_("Request"), {"fields": REQUEST_FIELDS}),
        (_("Response"), {"fields": RESPONSE_FIELDS}),
    )
    # Nothing is editable: every field shown on the detail page is read-only.
    readonly_fields = REQUEST_FIELDS + RESPONSE_FIELDS

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

    def log_addition(self, request: HttpRequest, obj: IdempotencyKey, message: Any) -> LogEntry:
        """Return the history entry of an addition, which names the record without its key."""
        return self._log(request, [obj], ADDITION, message)[0]

    def log_change(self, request: HttpRequest, obj: IdempotencyKey, message: Any) -> LogEntry:
        """Return the history entry of a change, which names the record without its key."""
        return self._log(request, [obj], CHANGE, message)[0]

    def log_deletions(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyKey]
    ) -> list[LogEntry]:
        """Return the history entries of a release, which name the records without their keys."""
        return self._log(request, queryset, DELETION)

    def _log(
        self,
        request: HttpRequest,
        records: Iterable[IdempotencyKey],
        action_flag: int,
        message: Any = "",
    ) -> list[LogEntry]:
        # Django's own log_actions() writes str(obj), which is the raw key.
        content_type_id = ContentType.objects.get_for_model(self.model).pk
        # Only staff users reach the admin, never an anonymous one.
        user_id = cast(int, request.user.pk)
        entries = [
            LogEntry(
                user_id=user_id,
                content_type_id=content_type_id,
                object_id=str(record.pk),
                object_repr=logged_name(record),
                action_flag=action_flag,
                change_message=message if isinstance(message, str) else json.dumps(message),
            )
            for record in records
        ]
        if len(entries) == 1:
            # A single entry is saved so that it gets its primary key on every database.
            entries[0].save()
        else:
            LogEntry.objects.bulk_create(entries)
        return entries

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
