"""How the admin shows a stored response body: its size, then JSON, text or a hex preview."""

from __future__ import annotations

import json
import re
import zlib
from email.message import Message

from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_idempotency.models import IdempotencyKey

#: Bodies longer than this are cut for display; the page states the full size.
BODY_DISPLAY_LIMIT = 64 * 1024
#: How many leading bytes of a binary body are shown in hex.
HEX_PREVIEW_BYTES = 64

#: Content codings the detail page decodes for display; the stored bytes stay as they are.
DECODED_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})

#: Characters that mark a body as binary even when it decodes.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def content_type(record: IdempotencyKey) -> Message:
    """Return the record's ``Content-Type`` and ``Content-Encoding`` parsed, empty when absent."""
    parsed = Message()
    for name, value in record.response_headers or []:
        if str(name).lower() in ("content-type", "content-encoding"):
            parsed[str(name).title()] = str(value)
    return parsed


def render_body(data: bytes, header: Message) -> SafeString:
    """Return ``data`` as HTML: its size, then JSON, text or a hex preview, cut at the limit.

    A gzip- or deflate-coded body is shown decoded, up to the limit.
    """
    size = len(data)
    coding = str(header.get("Content-Encoding", "")).strip().lower()
    decoded = decode_content(data, coding)
    if decoded is not None:
        shown, cut = decoded
        if cut:
            note = _("%(size)d bytes, %(coding)s; the first %(shown)d decoded bytes shown") % {
                "size": size,
                "coding": coding,
                "shown": BODY_DISPLAY_LIMIT,
            }
        else:
            note = _("%(size)d bytes, %(coding)s; %(decoded)d bytes decoded") % {
                "size": size,
                "coding": coding,
                "decoded": len(shown),
            }
    else:
        shown, cut = data[:BODY_DISPLAY_LIMIT], size > BODY_DISPLAY_LIMIT
        if cut:
            note = _("%(size)d bytes, the first %(shown)d shown") % {
                "size": size,
                "shown": BODY_DISPLAY_LIMIT,
            }
        else:
            note = _("%(size)d bytes") % {"size": size}
    text = decode_text(shown, header, cut=cut)
    if text is None:
        hex_preview = shown[:HEX_PREVIEW_BYTES].hex(" ")
        more = "…" if cut or len(shown) > HEX_PREVIEW_BYTES else ""
        return format_html(
            '<p>{}, {}</p><pre class="idempotency-body">{}{}</pre>',
            note,
            _("binary"),
            hex_preview,
            more,
        )
    kind = _("text")
    looks_json = text.lstrip()[:1] in ("{", "[")
    if not cut and ("json" in header.get_content_type() or looks_json):
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            kind = _("JSON")
        except ValueError:
            pass
        except RecursionError:
            # Nesting deeper than Python's recursion limit; the body is still shown, as text.
            kind = _("text, nested too deeply to indent")
    return format_html('<p>{}, {}</p><pre class="idempotency-body">{}</pre>', note, kind, text)


def decode_content(data: bytes, coding: str) -> tuple[bytes, bool] | None:
    """Return up to the display limit of ``data`` decoded and whether it was cut, or None.

    None means the coding is not one the admin decodes, or the stored stream does not decode.
    """
    if coding not in DECODED_CODINGS:
        return None
    # Output is bounded: a small stored body can inflate to gigabytes. wbits | 32: gzip or zlib.
    decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
    try:
        decoded = decoder.decompress(data, BODY_DISPLAY_LIMIT + 1)
    except zlib.error:
        return None
    cut = len(decoded) > BODY_DISPLAY_LIMIT
    if not cut and not decoder.eof:
        return None
    return decoded[:BODY_DISPLAY_LIMIT], cut


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
