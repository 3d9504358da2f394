"""The admin's history (``LogEntry``, "Recent actions") names released records without their keys."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.test import RequestFactory

from django_idempotency.events import key_hash
from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory, UserFactory
from tests.test_admin import CHANGELIST, post_action, staff_client

pytestmark = pytest.mark.django_db

#: Raw keys as clients send them; none is a substring of a scope, a path or a hash.
RAW_KEYS = ("sk-7f3a-Order-ABC", "9b0e1c54-2d7e-4f61-b2a0-5ec0ffee0042")


def columns(entry):
    """Return every text the admin stores for ``entry``, as the database holds it."""
    return [str(value) for value in LogEntry.objects.filter(pk=entry.pk).values().get().values()]


def assert_no_raw_key(entries):
    for entry in entries:
        for text in columns(entry):
            for key in RAW_KEYS:
                assert key not in text, (key, text)


def assert_names(entry, record):
    """``entry`` identifies ``record``: its primary key, scope and the key's short digest."""
    assert entry.object_id == str(record.pk)
    assert entry.content_type.model_class() is IdempotencyKey
    assert f"sha256:{key_hash(record.key)}" in entry.object_repr
    assert record.scope in entry.object_repr


def test_a_release_logs_each_record_by_scope_and_key_digest_never_by_key():
    records = [
        IdempotencyKeyFactory(key=RAW_KEYS[0], scope="user:7 POST api/charges/", in_progress=True),
        IdempotencyKeyFactory(key=RAW_KEYS[1], scope="tenant-acme POST api/refunds/"),
    ]
    operator = staff_client("view_idempotencykey", "delete_idempotencykey")
    confirmation = post_action(operator, "release_selected", *records)
    assert confirmation.templates[0].name.endswith("release_selected_confirmation.html")
    assert not LogEntry.objects.exists()

    post_action(operator, "release_selected", *records, post="yes")
    assert not IdempotencyKey.objects.exists()
    entries = list(LogEntry.objects.order_by("object_id"))
    assert [entry.action_flag for entry in entries] == [DELETION, DELETION]
    assert_no_raw_key(entries)
    for entry, record in zip(entries, records, strict=True):
        assert_names(entry, record)

    # "Recent actions" on the admin index shows the entries, still without a key.
    index = operator.get("/admin/").content.decode()
    assert f"sha256:{key_hash(RAW_KEYS[0])}" in index
    assert not [key for key in RAW_KEYS if key in index]
    assert operator.get(CHANGELIST).status_code == 200


@pytest.mark.parametrize(
    ("log", "flag"),
    [
        (
            lambda model_admin, request, record: model_admin.log_addition(request, record, []),
            ADDITION,
        ),
        (
            lambda model_admin, request, record: model_admin.log_change(
                request, record, [{"changed": {"fields": ["Key"]}}]
            ),
            CHANGE,
        ),
        (
            lambda model_admin, request, record: model_admin.log_deletions(
                request, IdempotencyKey.objects.filter(pk=record.pk)
            ),
            DELETION,
        ),
    ],
    ids=["addition", "change", "deletion"],
)
def test_every_admin_log_path_names_the_record_without_its_key(log, flag):
    # Adding and changing are switched off, and the delete page refuses; should one come back,
    # or a custom view call these, the entry still carries no key.
    record = IdempotencyKeyFactory(key=RAW_KEYS[0])
    request = RequestFactory().post("/admin/")
    request.user = UserFactory(username="operator", is_staff=True)
    log(admin.site.get_model_admin(IdempotencyKey), request, record)
    entry = LogEntry.objects.get()
    assert entry.action_flag == flag
    assert_no_raw_key([entry])
    assert_names(entry, record)
    if flag == CHANGE:
        assert json.loads(entry.change_message) == [{"changed": {"fields": ["Key"]}}]
