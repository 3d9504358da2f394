"""Fingerprint a request: SHA-256 over method, path, query string and a canonical body."""

from __future__ import annotations

import hashlib
import json
import tempfile
import weakref
from collections.abc import Collection, Iterable
from io import BytesIO
from operator import itemgetter
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.base import File
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.http.request import RawPostDataException
from django.utils.datastructures import MultiValueDict

from django_idempotency.exceptions import MalformedBody, PayloadTooLarge, TooManyFields
from django_idempotency.scope import path_without_format

FINGERPRINT_VERSION = b"v2"

#: Bytes read from the request at a time while a multipart body is copied aside.
SPOOL_CHUNK_SIZE = 64 * 1024


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
    """Return the query string sorted by name, each name's values in the order they came."""
    return urlencode(_by_name(_parse_pairs(query_string)))


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
    except RequestDataTooBig as exc:
        raise PayloadTooLarge from exc
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return _json_bytes(_select(json.loads(body), include, exclude))
        except (ValueError, RecursionError):
            # Not JSON (or nested too deep to canonicalize): the bytes are the payload.
            return b"raw:" + body
    if content_type == "application/x-www-form-urlencoded":
        pairs = _parse_pairs(body.decode("latin-1"))
        return _form_bytes(_select_pairs(pairs, include, exclude))
    return b"raw:" + body


def _parse_pairs(query_string: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            query_string,
            keep_blank_values=True,
            max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
        )
    except ValueError as exc:
        # Django's QueryDict reads parse_qsl's ValueError the same way.
        raise TooManyFields from exc


def _by_name(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    # A stable sort: Django reads the last value of a repeated name, so their order is meaning.
    return sorted(pairs, key=itemgetter(0))


def _json_bytes(data: Any) -> bytes:
    return (
        b"json:"
        + json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
        ).encode()
    )


def _json_default(value: object) -> object:
    if isinstance(value, File):
        return _file_value(value.name, _file_digest(value))
    return str(value)


def _form_bytes(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"form:" + urlencode(_by_name(pairs)).encode()


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
    django_request: HttpRequest = getattr(request, "_request", request)
    if getattr(django_request, "_read_started", False) and not hasattr(django_request, "_body"):
        # Parsed before us (CSRF checks read request.POST): the parsed copy is what the view reads.
        pairs = _field_pairs(request.POST) + _upload_pairs(request.FILES)
    else:
        post, digests = _parse_aside(django_request)
        pairs = _field_pairs(post) + digests
    return b"multipart:" + _form_bytes(_select_pairs(pairs, include, exclude))


def _parse_aside(request: HttpRequest) -> tuple[QueryDict, list[tuple[str, str]]]:
    """Return the fields and file digests of a copy of the body, leaving the request unparsed.

    The view then parses the body itself, with its own upload handlers.
    """
    stream: IO[bytes] = BytesIO(request._body) if hasattr(request, "_body") else _spool(request)
    handler = _DigestUploadHandler(request)
    try:
        # The stubs want read(None); MultiPartParser only ever passes a size.
        parser = MultiPartParser(request.META, stream, [handler], request.encoding)  # type: ignore[arg-type]
        post, _files = parser.parse()
    except RequestDataTooBig as exc:
        raise PayloadTooLarge from exc
    except (TooManyFieldsSent, TooManyFilesSent) as exc:
        raise TooManyFields from exc
    except MultiPartParserError as exc:
        raise MalformedBody(f"The multipart request body could not be parsed: {exc}") from exc
    finally:
        if not hasattr(request, "_body"):
            stream.seek(0)
            # Django's HttpRequest.body gives the request a fresh stream the same way.
            request._stream = stream  # type: ignore[assignment]
            request._read_started = False  # type: ignore[attr-defined]
    return post, handler.digests


def _spool(request: HttpRequest) -> IO[bytes]:
    # It outlives this function: the request reads it, and closes it when it is collected.
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, dir=settings.FILE_UPLOAD_TEMP_DIR
    )
    weakref.finalize(request, spool.close)
    while chunk := request.read(SPOOL_CHUNK_SIZE):
        spool.write(chunk)
    spool.seek(0)
    return spool


class _DigestUploadHandler(FileUploadHandler):
    """Hash each uploaded file's chunks without keeping them; ``digests`` lists the results."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.digests: list[tuple[str, str]] = []
        self._sha256 = hashlib.sha256()

    def new_file(
        self,
        field_name: str,
        file_name: str,
        content_type: str,
        content_length: int | None,
        charset: str | None = None,
        content_type_extra: dict[str, bytes] | None = None,
    ) -> None:
        """Start a new digest for the file that begins."""
        super().new_file(
            field_name, file_name, content_type, content_length, charset, content_type_extra
        )
        self._sha256 = hashlib.sha256()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        """Add a chunk to the digest; keep nothing."""
        self._sha256.update(raw_data)

    def file_complete(self, file_size: int) -> None:
        """Record the finished file's digest under its field name."""
        # The name an upload handler's file gets (basename, at most 255 characters).
        name = UploadedFile(name=self.file_name).name
        self.digests.append((self.field_name, _file_value(name, self._sha256.hexdigest())))


def _field_pairs(post: QueryDict) -> list[tuple[str, str]]:
    return [(name, value) for name, values in post.lists() for value in values]


def _upload_pairs(files: MultiValueDict[str, Any]) -> list[tuple[str, str]]:
    return [
        (name, _file_value(upload.name, _file_digest(upload)))
        for name, uploads in files.lists()
        for upload in uploads
    ]


def _file_digest(upload: File[Any]) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def _file_value(name: str | None, digest: str) -> str:
    return f"file:{name}:{digest}"


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
    data = json.loads(json.dumps(data, default=_json_default))
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
