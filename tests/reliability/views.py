"""Views the reliability servers expose: each execution writes one Charge whose note is ``ref``.

Counting Charge rows per ``ref`` in the database counts executions across every server process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent
from tests.testapp.models import Charge

#: The crash, outage and hostile-input probes call as one anonymous client, so these views opt
#: in to shared anonymous keys explicitly; the stress suite authenticates its users.
SHARED = "shared"

#: Lease of the lease-mode view: short, so a crashed claim frees up within a test.
LEASE_SECONDS = 3


def session_id() -> int | None:
    """Return the database's id for this process's connection (what an operator would kill)."""
    query = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
    if connection.vendor not in query:
        return None
    with connection.cursor() as cursor:
        cursor.execute(query[connection.vendor])
        return int(cursor.fetchone()[0])


def hold(ref: str, seconds: float) -> None:
    """Tell the test which process and database session run ``ref``, then wait to be killed."""
    report = {"pid": os.getpid(), "session": session_id()}
    directory = Path(os.environ["RELIABILITY_REPORT_DIR"])
    partial = directory / f"{ref}.tmp"
    partial.write_text(json.dumps(report))
    partial.rename(directory / f"{ref}.json")
    time.sleep(seconds)


def execute(request: Request, data: dict) -> Response:
    """Write the Charge for this execution and answer with who it belongs to."""
    owner = request.user if request.user.is_authenticated else None
    ref = str(data.get("ref", ""))
    charge = Charge.objects.create(amount=int(data.get("amount", 0)), owner=owner, note=ref[:100])
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if request.headers.get("X-Hold"):
        # A header, not the payload: fingerprints ignore it, so a retry is the same request.
        hold(ref, float(request.headers["X-Hold"]))
    body = {
        "id": charge.pk,
        "ref": ref,
        "amount": charge.amount,
        "owner": owner.get_username() if owner else None,
    }
    return Response(body, status=201, headers={"Location": f"/charges/{charge.pk}/"})


@api_view(["POST"])
@idempotent(anonymous=SHARED)
def charge(request: Request) -> Response:
    """Atomic mode (the default), key optional."""
    return execute(request, request.data)


@api_view(["POST"])
@idempotent(mode="lease", lease=LEASE_SECONDS, anonymous=SHARED)
def charge_lease(request: Request) -> Response:
    """Lease mode with a short lease; its write is its own transaction, so a crash undoes it."""
    with transaction.atomic():
        return execute(request, request.data)


@api_view(["POST", "PATCH"])
@idempotent(anonymous=SHARED)
def echo(request: Request) -> Response:
    """A DRF view that parses any body it is sent (DRF answers what it cannot parse)."""
    parsed = type(request.data).__name__
    Charge.objects.create(amount=0, note="echo")
    return Response({"parsed": parsed}, status=201)


@csrf_exempt
@idempotent(required=True, anonymous=SHARED)
def raw(request: HttpRequest) -> HttpResponse:
    """A plain Django view that reads nothing but the raw body: every 4xx here is the app's own."""
    Charge.objects.create(amount=len(request.body), note="raw")
    return JsonResponse({"length": len(request.body)}, status=201)


def health(request: HttpRequest) -> HttpResponse:
    """Answer once the worker has loaded the project."""
    return HttpResponse("ok", content_type="text/plain")
