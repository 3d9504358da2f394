"""Views that report what they read, for the fingerprint tests; also their URLconf."""

from __future__ import annotations

import hashlib
from collections import Counter

from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import FileUploadParser, FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from django_idempotency import idempotent

executions: Counter[str] = Counter()


def digest(upload) -> str:
    content = b"".join(upload.chunks())
    upload.seek(0)
    return hashlib.sha256(content).hexdigest()


def seen(post, files) -> dict:
    """Return everything a view can read from a parsed body, in the order it reads it."""
    return {
        "post": [[name, post.getlist(name)] for name in post],
        "last": {name: post[name] for name in post},
        "files": [
            [
                name,
                [
                    [type(f).__name__, f.name, f.size, f.content_type, f.charset, digest(f)]
                    for f in files.getlist(name)
                ],
            ]
            for name in files
        ],
    }


@api_view(["POST"])
@parser_classes([JSONParser, FormParser, MultiPartParser])
@idempotent(anonymous="shared")
def drf_echo(request):
    executions["drf_echo"] += 1
    query = {name: request.query_params.getlist(name) for name in request.query_params}
    return Response({"query": query, "data": seen(request.POST, request.FILES)}, status=201)


@csrf_exempt
@idempotent(anonymous="shared")
def django_echo(request: HttpRequest) -> JsonResponse:
    executions["django_echo"] += 1
    return JsonResponse(seen(request.POST, request.FILES), status=201)


@api_view(["POST"])
@parser_classes([FileUploadParser])
@idempotent
def drf_upload(request):
    """A session-authenticated raw upload (DRF's FileUploadParser)."""
    executions["drf_upload"] += 1
    return Response({"sha256": digest(request.data["file"])}, status=201)


@api_view(["POST"])
@parser_classes([MultiPartParser])
@idempotent
def drf_multipart_upload(request):
    executions["drf_multipart_upload"] += 1
    return Response({"sha256": digest(request.FILES["file"])}, status=201)


@csrf_exempt
@idempotent(anonymous="shared")
def django_raw(request: HttpRequest) -> JsonResponse:
    """Stream the raw body, as a view that accepts large uploads does."""
    executions["django_raw"] += 1
    sha = hashlib.sha256()
    size = 0
    while chunk := request.read(64 * 1024):
        sha.update(chunk)
        size += len(chunk)
    return JsonResponse({"size": size, "sha256": sha.hexdigest()}, status=201)


@csrf_exempt
@idempotent(anonymous="shared")
def django_upload_handlers(request: HttpRequest) -> JsonResponse:
    """Replace the upload handlers, as Django's file-upload docs show."""
    executions["django_upload_handlers"] += 1
    request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return JsonResponse(seen(request.POST, request.FILES), status=201)


@api_view(["POST"])
@parser_classes([MultiPartParser])
@idempotent(anonymous="shared")
def drf_upload_handlers(request):
    executions["drf_upload_handlers"] += 1
    request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return Response(seen(request.POST, request.FILES), status=201)


urlpatterns = [
    path("drf/echo/", drf_echo),
    path("django/echo/", django_echo),
    path("drf/upload/", drf_upload),
    path("drf/multipart-upload/", drf_multipart_upload),
    path("django/raw/", django_raw),
    path("django/upload-handlers/", django_upload_handlers),
    path("drf/upload-handlers/", drf_upload_handlers),
]
