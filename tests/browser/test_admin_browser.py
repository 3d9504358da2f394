from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANGELIST = "/admin/django_idempotency/idempotencykey/"


def staff(username, *codenames):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/?next={CHANGELIST}")
    page.fill("#id_username", username)
    page.fill("#id_password", "secret")
    follow(page, page.locator("input[type=submit]"))


def follow(page, locator):
    """Click ``locator`` and wait for the page it leads to."""
    with page.expect_navigation():
        locator.click()


def listed_keys(page):
    return set(page.locator("#result_list tbody th a").all_inner_texts())


def messages(page):
    return page.locator("ul.messagelist li").all_inner_texts()


def test_staff_browse_filter_search_read_and_act(page, screenshot, live_server):
    staff("operator", "view_idempotencykey", "delete_idempotencykey")
    IdempotencyKeyFactory(
        key="json-record",
        response_body=json.dumps({"id": 42, "note": "<b>paid</b>"}).encode(),
    )
    IdempotencyKeyFactory(
        key="binary-record",
        response_headers=[["Content-Type", "image/png"]],
        response_body=b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
    )
    IdempotencyKeyFactory(key="stuck-record", stale_lease=True)
    IdempotencyKeyFactory(key="expired-record", expired=True)
    IdempotencyKeyFactory(key="patch-record", method="PATCH", path="/api/orders/7/")

    log_in(page, live_server, "operator")
    assert page.locator("h1").inner_text() == "Select idempotency key to view"
    assert listed_keys(page) == {
        "json-record",
        "binary-record",
        "stuck-record",
        "expired-record",
        "patch-record",
    }
    assert "in progress (lease expired)" in page.locator("tr", has_text="stuck-record").inner_text()
    screenshot("01-changelist")

    follow(page, page.locator("#changelist-filter a", has_text="PATCH"))
    assert listed_keys(page) == {"patch-record"}
    follow(page, page.locator("#changelist-filter a", has_text="Clear all filters"))
    expiry = page.locator("#changelist-filter details", has_text="By expiry")
    follow(page, expiry.locator("a", has_text="expired"))
    assert listed_keys(page) == {"expired-record"}
    screenshot("02-filtered-expired")

    page.goto(f"{live_server.url}{CHANGELIST}")
    page.fill("#searchbar", "json-record")
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
    assert listed_keys(page) == {"json-record"}
    screenshot("03-search")

    follow(page, page.locator("#result_list a", has_text="json-record"))
    body = page.locator("pre.idempotency-body").inner_text()
    assert json.loads(body) == {"id": 42, "note": "<b>paid</b>"}
    assert '{\n  "id": 42,' in body
    assert "Content-Type" in page.locator("table.idempotency-headers").inner_text()
    assert page.locator("input[name=_save]").count() == 0
    screenshot("04-detail-json")

    page.goto(f"{live_server.url}{CHANGELIST}?q=binary-record")
    follow(page, page.locator("#result_list a", has_text="binary-record"))
    assert "208 bytes, binary" in page.locator("fieldset", has_text="Response").inner_text()
    assert page.locator("pre.idempotency-body").inner_text().startswith("89 50 4e 47 0d 0a")
    screenshot("05-detail-binary")

    page.goto(f"{live_server.url}{CHANGELIST}?q=stuck-record")
    page.locator("input.action-select").check()
    page.select_option("select[name=action]", "release_selected")
    follow(page, page.locator("button[name=index]"))
    assert page.locator("h1").inner_text() == "Release selected keys"
    assert "runs its view again" in page.locator("#content").inner_text()
    screenshot("06-release-confirmation")
    follow(page, page.locator("input[type=submit][value='Yes, release them']"))
    assert messages(page) == ["Successfully deleted 1 idempotency key."]
    assert not IdempotencyKey.objects.filter(key="stuck-record").exists()
    screenshot("07-released")

    page.goto(f"{live_server.url}{CHANGELIST}")
    page.select_option("select[name=action]", "purge_expired")
    follow(page, page.locator("button[name=index]"))
    assert messages(page) == ["Purged 1 expired idempotency key."]
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {
        "json-record",
        "binary-record",
        "patch-record",
    }
    screenshot("08-purged")


def test_staff_without_the_view_permission_see_no_records(page, screenshot, live_server):
    staff("outsider")
    IdempotencyKeyFactory(key="secret-record", created_at=timezone.now() - timedelta(minutes=1))
    log_in(page, live_server, "outsider")
    assert "403" in page.title() or "Forbidden" in page.content()
    assert "secret-record" not in page.content()
    page.goto(f"{live_server.url}/admin/")
    assert "Idempotency keys" not in page.content()
    screenshot("09-no-view-permission")
