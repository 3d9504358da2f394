from __future__ import annotations

import uuid

import pytest

from django_idempotency.exceptions import KeyInvalid
from django_idempotency.keys import parse_key


def parse(raw, **kwargs):
    return parse_key(
        raw,
        min_length=kwargs.pop("min_length", 1),
        max_length=kwargs.pop("max_length", 255),
        **kwargs,
    )


def test_no_header_is_no_key():
    assert parse(None) is None


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("abc-123", "abc-123"),
        ('"abc-123"', "abc-123"),
        ('  "abc-123"  ', "abc-123"),
        ('"a\\"b"', 'a"b'),
        ('"a\\\\b"', "a\\b"),
        ('"with space, and comma"', "with space, and comma"),
        ('"abc";version=1', "abc"),
        ("x" * 255, "x" * 255),
    ],
)
def test_sf_string_and_bare_token_are_the_same_key(raw, key):
    assert parse(raw) == key


@pytest.mark.parametrize(
    "raw",
    [
        "",
        '""',
        "   ",
        "x" * 256,
        '"' + "x" * 256 + '"',
        "clé",
        "key\x00",
        "key\x7f",
        "a\tb",
        "a, b",
        '"a", "b"',
        "a,b",
        '"unterminated',
        '"bad\\escape"',
        '"abc"trailing',
        "two words",
        'quo"te',
    ],
)
def test_malformed_keys_are_refused(raw):
    with pytest.raises(KeyInvalid):
        parse(raw)


def test_bounds_are_configurable():
    with pytest.raises(KeyInvalid, match="8 to 16"):
        parse("short", min_length=8, max_length=16)
    assert parse("long-enough", min_length=8, max_length=16) == "long-enough"


def test_validator_failures_are_invalid_keys():
    def uuid_only(key):
        uuid.UUID(key)

    key = str(uuid.uuid4())
    assert parse(key, validator=uuid_only) == key
    with pytest.raises(KeyInvalid, match="expected format"):
        parse("not-a-uuid", validator=uuid_only)


def test_django_validators_work_and_their_message_is_shown():
    from django.core.validators import validate_slug

    assert parse("order-42", validator=validate_slug) == "order-42"
    with pytest.raises(KeyInvalid, match="letters, numbers, underscores or hyphens"):
        parse("order.42", validator=validate_slug)
