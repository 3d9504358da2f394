"""How the admin shows a stored response body: its size, then JSON, text or a hex preview."""

from __future__ import annotations

import json
import re
from email.message import Message

from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_idempotency.models import IdempotencyKey

#: Bodies longer than this are cut for display; the page states the full size.
BODY_DISPLAY_LIMIT = 64 * 1024
#: How many leading bytes of a binary body are shown in hex.
HEX_PREVIEW_BYTES = 64

#: Characters that mark a body as binary even when it decodes.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


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
