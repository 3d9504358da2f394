"""Fingerprint a request: SHA-256 over method, path, sorted query string and a canonical body."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.http import HttpRequest
from django.http.request import RawPostDataException

from django_idempotency.scope import path_without_format

FINGERPRINT_VERSION = b"v1"


def default_fingerprint(
    request: HttpRequest,
    *,
    include: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> str:
    """Return the hex SHA-256 of the request's method, path, query string and canonical body.

    ``include`` keeps only those body fields, ``exclude`` drops them; dotted names reach into
    nested JSON objects. Both apply to JSON and form bodies.
    """
    digest = hashlib.sha256(FINGERPRINT_VERSION)
    for part in (
        (request.method or "").encode(),
        path_without_format(request).encode(),
        canonical_query(request.META.get("QUERY_STRING", "")).encode(),
        canonical_body(request, include=include, exclude=exclude),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def canonical_query(query_string: str) -> str:
    """Return the query string with its parameters sorted."""
    return urlencode(sorted(parse_qsl(query_string, keep_blank_values=True)))


def canonical_body(
    request: HttpRequest,
    *,
    include: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> bytes:
    """Return bytes that differ only when the body's meaning differs."""
    # DRF's Request.content_type keeps the parameters; Django's drops them.
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return _multipart(request, include, exclude)
    try:
        body = request.body
    except RawPostDataException:
        # The stream was consumed by a parser before us: fall back to the parsed data.
        return _json_bytes(_select(_parsed_data(request), include, exclude))
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return _json_bytes(_select(json.loads(body), include, exclude))
        except (ValueError, RecursionError):
            # Not JSON (or nested too deep to canonicalize): the bytes are the payload.
            return b"raw:" + body
    if content_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return _form_bytes(_select_pairs(pairs, include, exclude))
    return b"raw:" + body


def _json_bytes(data: Any) -> bytes:
    return (
        b"json:"
        + json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        ).encode()
    )


def _form_bytes(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"form:" + urlencode(sorted(pairs)).encode()


def _parsed_data(request: HttpRequest) -> Any:
    data = getattr(request, "data", None)
    if data is None:
        data = request.POST
    if hasattr(data, "lists"):
        return dict(data.lists())
    return data


def _multipart(
    request: HttpRequest, include: Collection[str] | None, exclude: Collection[str]
) -> bytes:
    pairs = [(name, value) for name, values in request.POST.lists() for value in values]
    for name, files in request.FILES.lists():
        for upload in files:
            digest = hashlib.sha256()
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
            pairs.append((name, f"file:{upload.name}:{digest.hexdigest()}"))
    return b"multipart:" + _form_bytes(_select_pairs(pairs, include, exclude))


def _select_pairs(
    pairs: list[tuple[str, str]], include: Collection[str] | None, exclude: Collection[str]
) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in pairs
        if (include is None or name in include) and name not in exclude
    ]


def _select(data: Any, include: Collection[str] | None, exclude: Collection[str]) -> Any:
    if not isinstance(data, dict) or (include is None and not exclude):
        return data
    if include is not None:
        selected: dict[str, Any] = {}
        for path in include:
            found, value = _lookup(data, path.split("."))
            if found and path not in exclude:
                selected[path] = value
        return selected
    data = json.loads(json.dumps(data, default=str))
    for path in exclude:
        _remove(data, path.split("."))
    return data


def _lookup(data: Any, parts: list[str]) -> tuple[bool, Any]:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _remove(data: Any, parts: list[str]) -> None:
    for part in parts[:-1]:
        if not isinstance(data, dict) or part not in data:
            return
        data = data[part]
    if isinstance(data, dict):
        data.pop(parts[-1], None)
