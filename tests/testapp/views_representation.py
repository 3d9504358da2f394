"""Views whose responses carry representation headers, mounted by tests/test_representation.py."""

from __future__ import annotations

import hashlib

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.cache import patch_cache_control
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.gzip import gzip_page
from django.views.decorators.vary import vary_on_headers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent
from tests.testapp.views import executed

#: Long enough, compressed too, for GZipMiddleware to compress it (it leaves bodies under 200 bytes).
LONG_BODY = {"id": 1, "tokens": [hashlib.sha256(bytes([n])).hexdigest() for n in range(20)]}


@csrf_exempt
@idempotent(anonymous="shared")
@never_cache
def private(request: HttpRequest) -> HttpResponse:
    executed("private")
    return JsonResponse({"id": 1}, status=201)


@api_view(["POST"])
@idempotent(anonymous="shared")
def drf_private(request: Request) -> Response:
    executed("drf_private")
    response = Response({"id": 1}, status=201)
    patch_cache_control(response, private=True, no_store=True)
    return response


@csrf_exempt
@idempotent(anonymous="shared")
@gzip_page
def compressed(request: HttpRequest) -> HttpResponse:
    executed("compressed")
    return JsonResponse(LONG_BODY, status=201)


@csrf_exempt
@idempotent(anonymous="shared")
@vary_on_headers("Accept-Language")
def negotiated(request: HttpRequest) -> HttpResponse:
    executed("negotiated")
    response = JsonResponse({"greeting": "bonjour"}, status=201)
    response["Content-Language"] = "fr"
    return response


@csrf_exempt
@idempotent(anonymous="shared")
def nested(request: HttpRequest) -> HttpResponse:
    executed("nested")
    depth = int(request.GET["depth"])
    return HttpResponse("[" * depth + "]" * depth, content_type="application/json", status=201)


urlpatterns = [
    path("private/", private),
    path("drf-private/", drf_private),
    path("compressed/", compressed),
    path("negotiated/", negotiated),
    path("nested/", nested),
    path("admin/", admin.site.urls),
]
