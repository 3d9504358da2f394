"""Views for the session-state and key-privacy tests: a claim that meets another lock.

``claim_then_lock`` claims its key, writes, waits for ``proceed`` and then locks a Charge row;
``lock_then_claim`` locks that row in an outer transaction and then claims the same key. Run in
that order they form a lock cycle the database must break: a deadlock on the claim.
"""

from __future__ import annotations

import threading

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django_idempotency import idempotent
from tests.testapp.models import Charge
from tests.testapp.views import executed

#: Set by the test to let ``claim_then_lock`` go on to lock the row.
proceed = threading.Event()
#: How long ``claim_then_lock`` waits for ``proceed``; a bound for a test that failed early.
PROCEED_TIMEOUT = 10.0
#: Rows ``claim_then_lock`` writes before it waits: a heavier transaction than its rival's.
HEAVY_ROWS = 20


def shared_scope(request: HttpRequest) -> str:
    """One scope for both views, so their claims of one key meet on one record."""
    return "session-deadlock"


def locked_row(request: HttpRequest) -> Charge:
    return Charge.objects.select_for_update().get(pk=int(request.GET["lock"]))


@csrf_exempt
@idempotent(fingerprint=False, anonymous="shared", scope=shared_scope)
def claim_then_lock(request: HttpRequest) -> HttpResponse:
    executed("session_claim_then_lock")
    Charge.objects.bulk_create(
        [Charge(amount=1, note="claim_then_lock") for _ in range(HEAVY_ROWS)]
    )
    proceed.wait(PROCEED_TIMEOUT)
    charge = locked_row(request)
    return JsonResponse({"locked": charge.pk}, status=201)


@idempotent(fingerprint=False, anonymous="shared", scope=shared_scope)
def _claim_inside(request: HttpRequest) -> HttpResponse:
    executed("session_lock_then_claim")
    return JsonResponse({"claimed": True}, status=201)


@csrf_exempt
def lock_then_claim(request: HttpRequest) -> HttpResponse:
    """Lock the row first, then run an idempotent view inside the same transaction."""
    with transaction.atomic():
        locked_row(request)
        return _claim_inside(request)


@csrf_exempt
@idempotent(anonymous="shared")
def raises(request: HttpRequest) -> HttpResponse:
    """Claim the key, write, then fail: the request ends in Django's 500 handling."""
    executed("session_raises")
    Charge.objects.create(amount=1, note="raises")
    raise RuntimeError("the view failed after writing")
