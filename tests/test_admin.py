from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_idempotency.admin import BODY_DISPLAY_LIMIT, changelist
from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:django_idempotency_idempotencykey_changelist")


def change_url(record):
    return reverse("admin:django_idempotency_idempotencykey_change", args=[record.pk])


def staff_client(*codenames):
    user = UserFactory(username=f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def viewer():
    return staff_client("view_idempotencykey")


@pytest.fixture
def operator():
    return staff_client("view_idempotencykey", "delete_idempotencykey")


@pytest.fixture
def records():
    """One record in every state, each with a key naming it."""
    return {
        "completed": IdempotencyKeyFactory(key="completed"),
        "expired": IdempotencyKeyFactory(key="expired", expired=True),
        "in_progress": IdempotencyKeyFactory(key="in-progress", in_progress=True),
        "stale": IdempotencyKeyFactory(
            key="stale",
            stale_lease=True,
            expires_at=timezone.now() + timedelta(hours=23),
        ),
        "abandoned": IdempotencyKeyFactory(
            key="abandoned",
            stale_lease=True,
            created_at=timezone.now() - timedelta(days=2),
            expires_at=timezone.now() - timedelta(days=1),
        ),
        "without_body": IdempotencyKeyFactory(key="without-body", without_body=True),
        "patch": IdempotencyKeyFactory(
            key="patch", method="PATCH", path="/api/orders/7/", response_status=204
        ),
        "redirect": IdempotencyKeyFactory(key="redirect", response_status=303),
        "refused": IdempotencyKeyFactory(key="refused", response_status=409),
        "failed": IdempotencyKeyFactory(key="failed", response_status=503),
        "other_user": IdempotencyKeyFactory(key="other-user", scope="user:2 POST api/charges/"),
    }


def listed(response):
    assert response.status_code == 200
    return {record.key for record in response.context["cl"].result_list}


def row(html, key):
    """Return the changelist row of ``key``."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*?>{re.escape(key)}</a>.*?</tr>", html, re.S)
    assert match, f"no row for {key!r}"
    return match.group(0)


def test_changelist_shows_records_in_every_state(viewer, records):
    response = viewer.get(CHANGELIST)
    assert listed(response) == {record.key for record in records.values()}
    html = response.content.decode()
    assert 'alt="True"' in row(html, "expired")
    assert 'alt="True"' in row(html, "abandoned")
    assert 'alt="False"' in row(html, "completed")
    assert 'alt="False"' in row(html, "stale")
    assert "in progress (lease expired)" in row(html, "stale")
    assert "in progress (lease expired)" not in row(html, "in-progress")
    assert "in progress" in row(html, "in-progress")
    assert "user:2 POST api/charges/" in row(html, "other-user")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=in_progress", {"in-progress", "stale", "abandoned"}),
        ("method__exact=PATCH", {"patch"}),
        ("response_class=2xx", {"completed", "expired", "without-body", "patch", "other-user"}),
        ("response_class=3xx", {"redirect"}),
        ("response_class=4xx", {"refused"}),
        ("response_class=5xx", {"failed"}),
        ("expired=yes", {"expired", "abandoned"}),
    ],
)
def test_each_filter_narrows_the_list(viewer, records, query, expected):
    assert listed(viewer.get(f"{CHANGELIST}?{query}")) == expected


def test_live_and_expired_split_the_records(viewer, records):
    expired = listed(viewer.get(f"{CHANGELIST}?expired=yes"))
    live = listed(viewer.get(f"{CHANGELIST}?expired=no"))
    assert not expired & live
    assert expired | live == {record.key for record in records.values()}
    assert {"in-progress", "stale"} <= live


def test_expiry_follows_the_project_clock(viewer, records, settings):
    settings.IDEMPOTENCY_CLOCK = lambda: timezone.now() + timedelta(days=3)
    # Three days on, every retention has ended; a claim without an expiry never ends.
    assert listed(viewer.get(f"{CHANGELIST}?expired=no")) == {"in-progress"}
    html = viewer.get(CHANGELIST).content.decode()
    assert 'alt="True"' in row(html, "completed")
    assert "in progress (lease expired)" in row(html, "in-progress")


@pytest.mark.parametrize("query", ["response_class=6xx", "expired=maybe"])
def test_an_unknown_filter_value_is_refused(viewer, records, query):
    response = viewer.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("completed", {"completed"}),
        ("complete", set()),
        ("user:2", {"other-user"}),
        ("user:2 POST api/charges/", {"other-user"}),
        ("/api/orders/", {"patch"}),
        ("  patch  ", {"patch"}),
        ("api/orders", set()),
        ("tenant-7", {"tenant-record"}),
        ("tenant", set()),
    ],
)
def test_search_matches_key_exactly_and_scope_or_path_by_prefix(viewer, records, term, expected):
    IdempotencyKeyFactory(key="tenant-record", scope="tenant-7")
    assert listed(viewer.get(CHANGELIST, {"q": term})) == expected


def hierarchy(response):
    """Return the date hierarchy's links as (year, month, day) query values."""
    html = response.content.decode()
    # Django 6.1 added attributes to the <nav>.
    start = re.search(r'<nav class="toplinks"[^>]*>', html).start()
    nav = html[start : html.index("</nav>", start)]
    return set(re.findall(r"created_at__(year|month|day)=(\d+)", nav))


def test_date_hierarchy_lists_only_periods_that_hold_records(viewer):
    for moment in ("2025-12-31T23:30", "2026-01-05T10:00", "2026-03-10T08:00", "2026-03-10T09:00"):
        created = timezone.make_aware(timezone.datetime.fromisoformat(moment))
        IdempotencyKeyFactory(key=moment, created_at=created)
    assert hierarchy(viewer.get(CHANGELIST)) == {("year", "2025"), ("year", "2026")}
    months = hierarchy(viewer.get(f"{CHANGELIST}?created_at__year=2026"))
    assert {value for kind, value in months if kind == "month"} == {"1", "3"}
    days = hierarchy(viewer.get(f"{CHANGELIST}?created_at__year=2026&created_at__month=3"))
    assert {value for kind, value in days if kind == "day"} == {"10"}
    day = f"{CHANGELIST}?created_at__year=2026&created_at__month=3&created_at__day=10"
    assert listed(viewer.get(day)) == {"2026-03-10T08:00", "2026-03-10T09:00"}


def test_expiry_pages_list_by_expiry_without_the_date_hierarchy(viewer, records):
    response = viewer.get(f"{CHANGELIST}?expired=yes")
    assert response.context["cl"].date_hierarchy is None
    assert [r.key for r in response.context["cl"].result_list] == ["expired", "abandoned"]
    assert response.context["cl"].date_hierarchy is None
    assert viewer.get(CHANGELIST).context["cl"].date_hierarchy == "created_at"


def test_large_lists_are_counted_up_to_a_cap(viewer, records, monkeypatch):
    monkeypatch.setattr(changelist, "COUNT_CAP", 4)
    response = viewer.get(CHANGELIST)
    html = response.content.decode()
    assert "More than 4 idempotency keys" in html
    assert "Select all" not in html
    assert response.context["cl"].paginator.num_pages == 1
    html = viewer.get(f"{CHANGELIST}?response_class=3xx").content.decode()
    assert "1 idempotency key" in html and "More than" not in html


def test_changelist_queries_do_not_grow_with_rows_nor_count_the_whole_table(viewer, records):
    def queries(url):
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(url).status_code == 200
        return [query["sql"] for query in captured.captured_queries]

    url = f"{CHANGELIST}?status__exact=completed"
    few = queries(url)
    IdempotencyKeyFactory.create_batch(60)
    many = queries(url)
    assert len(many) == len(few)
    counts = [sql for sql in many if "COUNT(" in sql.upper()]
    assert counts, "the filtered page is still counted once"
    assert all("WHERE" in sql.upper() and "LIMIT" in sql.upper() for sql in counts), counts
    unfiltered = [sql for sql in queries(CHANGELIST) if "COUNT(" in sql.upper()]
    assert unfiltered and all("LIMIT" in sql.upper() for sql in unfiltered), unfiltered
    # Neither the method filter nor the date hierarchy scans the table for its choices.
    assert not [sql for sql in many if "DISTINCT" in sql.upper()]
    listing = [sql for sql in many if "fencing_token" in sql and "COUNT(" not in sql.upper()]
    assert listing, "the page lists the records"
    assert not [sql for sql in listing if "response_body" in sql]


def body_of(browser, record):
    response = browser.get(change_url(record))
    assert response.status_code == 200
    html = response.content.decode()
    return html[html.index("Response</h2>") :]


def test_detail_groups_request_and_response_and_tables_headers(viewer):
    record = IdempotencyKeyFactory(
        key="detail", response_headers=[["Content-Type", "application/json"], ["Location", "/x"]]
    )
    html = viewer.get(change_url(record)).content.decode()
    request_side = html[html.index("Request</h2>") : html.index("Response</h2>")]
    assert "detail" in request_side
    assert "0" * 64 in request_side
    assert "<tr><th>Location</th><td>/x</td></tr>" in body_of(viewer, record)


def test_detail_pretty_prints_json(viewer):
    record = IdempotencyKeyFactory(response_body=b'{"id":1,"name":"<b>caf\xc3\xa9</b>"}')
    body = body_of(viewer, record)
    assert "JSON" in body
    assert (
        "{\n  &quot;id&quot;: 1,\n  &quot;name&quot;: &quot;&lt;b&gt;café&lt;/b&gt;&quot;\n}"
        in body
    )
    assert "<b>café" not in body


def test_detail_shows_text_in_its_charset(viewer):
    record = IdempotencyKeyFactory(
        response_headers=[["Content-Type", "text/plain; charset=latin-1"]],
        response_body="Paid: 5 € <script>".encode("cp1252").replace(b"\x80", b"E") + b" caf\xe9",
    )
    body = body_of(viewer, record)
    assert "text" in body
    assert "Paid: 5 E &lt;script&gt; café" in body


def test_detail_shows_binary_as_size_and_hex(viewer):
    data = bytes(range(256)) * 2
    record = IdempotencyKeyFactory(
        response_headers=[["Content-Type", "application/octet-stream"]], response_body=data
    )
    body = body_of(viewer, record)
    assert "512 bytes, binary" in body
    assert data[:64].hex(" ") + "…" in body
    assert data[64:65].hex() + " " + data[65:66].hex() not in body


def test_detail_cuts_large_bodies_and_states_their_size(viewer):
    data = ("é" * BODY_DISPLAY_LIMIT).encode()
    record = IdempotencyKeyFactory(
        response_headers=[["Content-Type", "text/plain; charset=utf-8"]], response_body=data
    )
    body = body_of(viewer, record)
    assert f"{len(data)} bytes, the first {BODY_DISPLAY_LIMIT} shown, text" in body
    assert "é" * (BODY_DISPLAY_LIMIT // 2) in body
    assert "é" * (BODY_DISPLAY_LIMIT // 2 + 1) not in body


def test_detail_explains_a_body_that_was_not_kept(viewer):
    assert "not kept: the response was streamed" in body_of(
        viewer, IdempotencyKeyFactory(without_body=True)
    )
    assert "not kept yet" in body_of(viewer, IdempotencyKeyFactory(in_progress=True))


def post_action(browser, action, *records, **extra):
    data = {"action": action, "index": "0", **extra}
    data[ACTION_CHECKBOX_NAME] = [record.pk for record in records]
    return browser.post(CHANGELIST, data, follow=True)


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def test_purge_runs_without_a_selection_and_reports_the_count(operator, records, caplog):
    caplog.set_level(logging.INFO, logger="django_idempotency")
    response = post_action(operator, "purge_expired")
    assert messages_of(response) == ["Purged 2 expired idempotency keys."]
    remaining = set(IdempotencyKey.objects.values_list("key", flat=True))
    assert remaining == {r.key for r in records.values()} - {"expired", "abandoned"}
    assert "purged 2 expired idempotency keys" in caplog.text
    response = post_action(operator, "purge_expired", records["completed"])
    assert messages_of(response) == ["No expired idempotency keys."]
    assert IdempotencyKey.objects.filter(key="completed").exists()


def test_release_asks_for_confirmation_then_deletes_the_selection(operator, records, caplog):
    caplog.set_level(logging.INFO, logger="django_idempotency")
    chosen = (records["stale"], records["in_progress"])
    response = post_action(operator, "release_selected", *chosen)
    assert response.templates[0].name.endswith("release_selected_confirmation.html")
    html = response.content.decode()
    assert "<h1>Release selected keys</h1>" in html
    assert "runs its view again" in html
    assert 'name="action" value="release_selected"' in html
    assert ">stale</a>" in html and ">in-progress</a>" in html
    assert IdempotencyKey.objects.count() == len(records)

    response = post_action(operator, "release_selected", *chosen, post="yes")
    assert messages_of(response) == ["Successfully deleted 2 idempotency keys."]
    assert not IdempotencyKey.objects.filter(pk__in=[r.pk for r in chosen]).exists()
    assert IdempotencyKey.objects.count() == len(records) - 2
    assert "released 2 idempotency keys" in caplog.text
    assert "in-progress" not in caplog.text and "stale" not in caplog.text


def test_viewers_get_no_actions_and_cannot_delete(viewer, records):
    response = viewer.get(CHANGELIST)
    assert 'name="action"' not in response.content.decode()
    assert post_action(viewer, "purge_expired").status_code == 200
    post_action(viewer, "release_selected", records["completed"], post="yes")
    assert IdempotencyKey.objects.count() == len(records)


def test_generic_delete_is_replaced_by_release(operator, records):
    html = operator.get(CHANGELIST).content.decode()
    assert 'value="release_selected"' in html and 'value="purge_expired"' in html
    assert 'value="delete_selected"' not in html
    record = records["completed"]
    assert "deletelink" not in operator.get(change_url(record)).content.decode()
    delete = reverse("admin:django_idempotency_idempotencykey_delete", args=[record.pk])
    assert operator.get(delete).status_code == 403
    assert operator.post(delete, {"post": "yes"}).status_code == 403
    assert IdempotencyKey.objects.filter(pk=record.pk).exists()


def test_records_cannot_be_added_or_changed(operator, records):
    add = reverse("admin:django_idempotency_idempotencykey_add")
    assert operator.get(add).status_code == 403
    record = records["completed"]
    response = operator.post(change_url(record), {"key": "changed", "status": "in_progress"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert (record.key, record.status) == ("completed", "completed")
    html = operator.get(change_url(record)).content.decode()
    assert 'name="_save"' not in html
    assert 'name="key"' not in html and "<textarea" not in html


def test_staff_without_the_view_permission_see_nothing(records):
    browser = staff_client()
    assert browser.get(CHANGELIST).status_code == 403
    assert browser.get(change_url(records["completed"])).status_code == 403
    assert post_action(browser, "purge_expired").status_code == 403
    assert IdempotencyKey.objects.count() == len(records)
    assert "django_idempotency" not in browser.get(reverse("admin:index")).content.decode()


def test_delete_permission_alone_does_not_open_the_list(records):
    browser = staff_client("delete_idempotencykey")
    assert post_action(browser, "purge_expired").status_code == 403
    assert IdempotencyKey.objects.count() == len(records)
