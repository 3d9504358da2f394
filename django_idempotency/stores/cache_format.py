"""The cache store's value format: one key record as compact JSON, times in epoch milliseconds.

A record is a JSON object with ``"v": 1`` (``FORMAT_VERSION``), its status, fingerprint, fencing
``token``, method and path, the times ``created_at``, ``lease_expires_at``, ``expires_at`` and
``completed_at`` as whole milliseconds since the epoch, and once completed the response (status,
``[name, value]`` header pairs, base64 body or null). The Lua scripts in ``cache`` read the same
fields.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from django.conf import settings

from django_idempotency.stores.base import COMPLETED, IN_PROGRESS, Record, StoredResponse

#: The record layout this code writes; any other version is read as "unreadable".
FORMAT_VERSION = 1

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MILLISECOND = timedelta(milliseconds=1)


def dump(fields: dict[str, Any]) -> str:
    """Return ``fields`` as compact JSON."""
    return json.dumps(fields, separators=(",", ":"))


def to_ms(moment: datetime) -> int:
    """Return ``moment`` as whole milliseconds since the epoch (naive times are local time)."""
    if moment.tzinfo is None:
        return int(moment.timestamp() * 1000)
    return (moment - EPOCH) // MILLISECOND


def from_ms(milliseconds: int) -> datetime:
    """Return epoch ``milliseconds`` as a datetime, aware (UTC) only when ``USE_TZ`` is on."""
    if settings.USE_TZ:
        return EPOCH + milliseconds * MILLISECOND
    return datetime.fromtimestamp(milliseconds / 1000)


def life_ms(duration: timedelta) -> int:
    """Return ``duration`` in whole milliseconds, at least 1 (Redis refuses ``PX 0``)."""
    return max(1, -(-duration // MILLISECOND))


def decode(raw: bytes | str) -> Record:
    """Return the record a stored value holds.

    A value this version cannot read (another format version, broken JSON) becomes a completed
    record without a replayable body: the engine answers "already processed" and never runs the
    view again for it. Its fingerprint, token, expiry, status and headers (for ``Location``) are
    kept where they can be read; an unknown status is 0.
    """
    try:
        fields = json.loads(raw)
    except ValueError:
        return unreadable({})
    if not isinstance(fields, dict):
        return unreadable({})
    if fields.get("v") != FORMAT_VERSION:
        return unreadable(fields)
    try:
        return read_v1(fields)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return unreadable(fields)


def read_v1(fields: dict[str, Any]) -> Record:
    """Return the record held by a format-1 value; raise on a malformed one."""
    response = None
    if fields["status"] == COMPLETED:
        body = fields["response_body"]
        response = StoredResponse(
            status=int(fields["response_status"]),
            headers=tuple((str(name), str(value)) for name, value in fields["response_headers"]),
            body=None if body is None else base64.b64decode(body, validate=True),
        )
    elif fields["status"] != IN_PROGRESS:
        raise ValueError(f"unknown status {fields['status']!r}")
    return Record(
        pk=None,
        fingerprint=str(fields["fingerprint"]),
        status=fields["status"],
        response=response,
        expires_at=optional_time(fields["expires_at"]),
        lease_expires_at=optional_time(fields["lease_expires_at"]),
        fencing_token=int(fields["token"]),
    )


def unreadable(fields: dict[str, Any]) -> Record:
    """Return the "already processed" record that stands for a value that cannot be read."""
    fingerprint = fields.get("fingerprint")
    status = fields.get("response_status")
    expires_at = fields.get("expires_at")
    token = fields.get("token")
    try:
        headers = tuple((str(name), str(value)) for name, value in fields["response_headers"])
    except (KeyError, TypeError, ValueError):
        headers = ()
    return Record(
        pk=None,
        fingerprint=fingerprint if isinstance(fingerprint, str) else "",
        status=COMPLETED,
        response=StoredResponse(
            status=status if isinstance(status, int) else 0, headers=headers, body=None
        ),
        expires_at=from_ms(expires_at) if isinstance(expires_at, int) else None,
        fencing_token=token if isinstance(token, int) else 0,
        unreadable=True,
    )


def optional_time(value: object) -> datetime | None:
    """Return a stored epoch-milliseconds value as a datetime; ``None`` stays ``None``."""
    if value is None:
        return None
    if not isinstance(value, int):
        raise TypeError(f"expected epoch milliseconds, not {value!r}")
    return from_ms(value)
