"""Identity is byte-exact: keys, scopes and routes that differ only in case, accents or a trailing
space are different keys on every database, through real requests on the database store.

MariaDB's default collations (``utf8mb4_general_ci``, ``utf8mb4_unicode_ci``) fold case and
accents and pad trailing spaces, so there a second request used to replay the first one's response.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory
from tests.helpers import post
from tests.testapp import views
from tests.testapp.models import Charge

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.urls_identity")]

REPLAYED = "Idempotent-Replayed"
E016 = "django_idempotency.E016"
FOLDING_COLLATION = "utf8mb4_general_ci"

mysql_only = pytest.mark.skipif(
    connection.vendor != "mysql", reason=f"MariaDB/MySQL collations, not {connection.vendor}"
)


@pytest.fixture
def user():
    return User.objects.create_user("identity")


@pytest.fixture
def api(user):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    return client


def assert_own_executions(first, second, view: str) -> None:
    """Assert both requests ran ``view`` and got their own response, neither a replay."""
    for response in (first, second):
        assert response.status_code == 201, response.content
        assert REPLAYED not in response, "the second request replayed the first one's response"
    assert json.loads(first.content)["id"] != json.loads(second.content)["id"]
    assert views.executions[view] == 2, views.executions
    assert Charge.objects.count() == 2
    assert IdempotencyKey.objects.filter(status="completed").count() == 2


def assert_replays(retry, original) -> None:
    assert retry.status_code == original.status_code
    assert retry[REPLAYED] == "true"
    assert retry.content == original.content


@pytest.mark.parametrize(
    ("first_header", "second_header", "first_key", "second_key"),
    [
        ("Order-ABC", "order-abc", "Order-ABC", "order-abc"),
        ('"k-1"', '"k-1 "', "k-1", "k-1 "),
        ('"k-1 "', '"k-1"', "k-1 ", "k-1"),
    ],
    ids=["case", "trailing-space", "trailing-space-first"],
)
def test_keys_differing_in_case_or_a_trailing_space_are_different_keys(
    api, first_header, second_header, first_key, second_key
):
    first = post(api, "/api/charges/", {"amount": 5}, key=first_header)
    second = post(api, "/api/charges/", {"amount": 5}, key=second_header)
    assert_own_executions(first, second, "identity_charge")
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == sorted(
        [first_key, second_key]
    )
    # Each key still replays its own response, not the other's.
    assert_replays(post(api, "/api/charges/", {"amount": 5}, key=first_header), first)
    assert_replays(post(api, "/api/charges/", {"amount": 5}, key=second_header), second)
    assert views.executions["identity_charge"] == 2


@pytest.mark.parametrize(
    ("first_tenant", "second_tenant"),
    [("acme", "ACME"), ("café", "cafe"), ("cafe", "café"), ("acme", "acme ")],
    ids=["case", "accent", "accent-second", "trailing-space"],
)
def test_custom_scopes_differing_in_case_accents_or_spaces_are_different_tenants(
    api, first_tenant, second_tenant
):
    def send(tenant):
        return post(api, "/api/tenant/", {"amount": 5}, key="k-1", HTTP_X_TENANT=tenant)

    first = send(first_tenant)
    second = send(second_tenant)
    assert_own_executions(first, second, "tenant_charge")
    scopes = sorted(IdempotencyKey.objects.values_list("scope", flat=True))
    assert scopes == sorted([first_tenant, second_tenant])
    assert_replays(send(first_tenant), first)
    assert_replays(send(second_tenant), second)
    assert views.executions["tenant_charge"] == 2


def test_routes_differing_in_case_are_different_operations(api):
    first = post(api, "/api/charges/", {"amount": 5}, key="k-1")
    second = post(api, "/api/Charges/", {"amount": 5}, key="k-1")
    assert_own_executions(first, second, "identity_charge")
    assert_replays(post(api, "/api/charges/", {"amount": 5}, key="k-1"), first)
    assert_replays(post(api, "/api/Charges/", {"amount": 5}, key="k-1"), second)
    assert views.executions["identity_charge"] == 2


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        ("key", "Order-ABC", "order-abc"),
        ("key", "k-1", "k-1 "),
        ("scope", "acme", "ACME"),
        ("scope", "café", "cafe"),
        ("scope", "acme", "acme "),
    ],
)
def test_the_table_holds_and_finds_both_records(field, first, second):
    # The unique constraint and the lookup compare the columns exactly.
    IdempotencyKeyFactory(**{field: first})
    IdempotencyKeyFactory(**{field: second})
    for value in (first, second):
        found = IdempotencyKey.objects.filter(**{field: value})
        assert list(found.values_list(field, flat=True)) == [value]


@contextmanager
def column_collation(column: str, collation: str) -> Iterator[None]:
    """Give the key table's ``column`` a ``collation`` (MariaDB/MySQL), restoring it afterwards."""
    table = IdempotencyKey._meta.db_table
    length = IdempotencyKey._meta.get_field(column).max_length
    (column_type, charset, original, nullable) = column_definition(column)
    quote = connection.ops.quote_name
    charset_of = collation.split("_", 1)[0]
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {quote(table)} MODIFY {quote(column)} VARCHAR({length}) "
            f"CHARACTER SET {charset_of} COLLATE {collation} NOT NULL"
        )
    try:
        yield
    finally:
        restored = f"{column_type}"
        if original is not None:
            restored += f" CHARACTER SET {charset} COLLATE {original}"
        restored += " NULL" if nullable == "YES" else " NOT NULL"
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {quote(table)} MODIFY {quote(column)} {restored}")
        assert column_definition(column) == (column_type, charset, original, nullable)


def column_definition(column: str) -> tuple[str, str | None, str | None, str]:
    """Return the key table column's type, character set, collation and nullability."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE "
            "FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = %s",
            [IdempotencyKey._meta.db_table, column],
        )
        row = cursor.fetchone()
    assert row is not None, f"no column {column!r}"
    return tuple(row)


def e016(messages) -> list[checks.CheckMessage]:
    return [message for message in messages if message.id == E016]


@pytest.mark.django_db(transaction=True)
def test_the_migrated_table_passes_the_identity_check():
    assert e016(checks.run_checks(databases=["default"])) == []
    # And the command does not fail on it (other checks may warn; none is an error).
    call_command("check", databases=["default"], fail_level="ERROR")


@mysql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("column", ["scope", "key"])
def test_a_column_that_folds_is_a_system_check_error(column):
    with column_collation(column, FOLDING_COLLATION):
        issues = e016(checks.run_checks(databases=["default"]))
        assert issues, f"no {E016} for a {FOLDING_COLLATION} {column!r} column"
        assert all(issue.level == checks.ERROR for issue in issues)
        assert any(column in f"{issue.msg} {issue.hint}" for issue in issues), issues
        with pytest.raises(SystemCheckError, match=E016):
            call_command("check", databases=["default"])
    assert e016(checks.run_checks(databases=["default"])) == []


@mysql_only
@pytest.mark.django_db(transaction=True)
def test_the_migrated_columns_compare_case_space_and_accents_exactly():
    for column in ("scope", "key"):
        _type, charset, collation, _nullable = column_definition(column)
        with connection.cursor() as cursor:
            for left, right in (("a", "A"), ("a", "a "), ("e", "é")):
                if collation is None:
                    # A binary column (VARBINARY): its values compare as bytes.
                    sql = "SELECT CAST(%s AS BINARY) = CAST(%s AS BINARY)"
                else:
                    sql = f"SELECT CONVERT(%s USING {charset}) COLLATE {collation} = CONVERT(%s USING {charset})"
                cursor.execute(sql, [left, right])
                (equal,) = cursor.fetchone()
                assert not equal, f"{column!r} ({collation}) has {left!r} = {right!r}"
