"""Parse the ``Idempotency-Key`` header: an RFC 8941 sf-string or a bare token, one key only."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.core.exceptions import ValidationError

from django_idempotency.exceptions import KeyInvalid

PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))


def parse_key(
    raw: str | None,
    *,
    min_length: int,
    max_length: int,
    validator: Callable[[str], object] | None = None,
) -> str | None:
    """Return the key carried by a header value, ``None`` when there is no header.

    Raise ``KeyInvalid`` for an empty, too long, non-ASCII or repeated key.
    """
    if raw is None:
        return None
    value = raw.strip(" \t")
    if any(ch not in PRINTABLE for ch in value):
        raise KeyInvalid("The Idempotency-Key header may contain printable ASCII characters only.")
    key = _parse_sf_string(value) if value.startswith('"') else _parse_bare(value)
    if not min_length <= len(key) <= max_length:
        raise KeyInvalid(
            f"The Idempotency-Key must be {min_length} to {max_length} characters long; "
            f"this one has {len(key)}."
        )
    if validator is not None:
        try:
            validator(key)
        except (ValueError, ValidationError) as exc:
            raise KeyInvalid(
                f"The Idempotency-Key is not in the expected format: {_message(exc)}"
            ) from exc
    return key


def _parse_bare(value: str) -> str:
    if "," in value:
        raise KeyInvalid("Send exactly one Idempotency-Key; this request carries several.")
    if " " in value or '"' in value:
        raise KeyInvalid(
            "An unquoted Idempotency-Key may not contain spaces or quotes; "
            'send it as a quoted string ("...") instead.'
        )
    return value


def _parse_sf_string(value: str) -> str:
    chars: list[str] = []
    index = 1
    while index < len(value):
        ch = value[index]
        if ch == "\\":
            if index + 1 >= len(value) or value[index + 1] not in '"\\':
                raise KeyInvalid('In a quoted Idempotency-Key only \\" and \\\\ may be escaped.')
            chars.append(value[index + 1])
            index += 2
            continue
        if ch == '"':
            _check_after_string(value[index + 1 :])
            return "".join(chars)
        chars.append(ch)
        index += 1
    raise KeyInvalid("The quoted Idempotency-Key has no closing quote.")


def _check_after_string(rest: str) -> None:
    # RFC 8941 item parameters (";a=1") are allowed and ignored; anything else is not one item.
    rest = rest.lstrip(" \t")
    if not rest or rest.startswith(";"):
        return
    if rest.startswith(","):
        raise KeyInvalid("Send exactly one Idempotency-Key; this request carries several.")
    raise KeyInvalid("The Idempotency-Key header has characters after the quoted key.")


def _message(exc: ValueError | ValidationError) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(str(message) for message in exc.messages)
    return str(exc)


class MaskedKey(str):
    """A key that never shows itself in a ``repr``: error reports and debuggers print locals so.

    It is a ``str`` in every other way, so the stores and drivers take it as the key itself.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        digest = hashlib.sha256(self.encode()).hexdigest()[:12]
        return f"<Idempotency-Key sha256:{digest}>"
