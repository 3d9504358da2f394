"""The provider's webhook: a plain Django view (no DRF) made idempotent with ``@idempotent``.

The provider delivers each event until it gets a 2xx, every delivery with the event's id as
``Idempotency-Key``; the event is recorded once however often it arrives.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_idempotency import idempotent
from payments.models import Payout, PayoutEvent

SECRET_HEADER = "X-Webhook-Secret"
STATUS_AFTER = {"payout.paid": Payout.PAID, "payout.failed": Payout.FAILED}


def signed_by_provider(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Return ``view`` answering 403 to requests without the webhook secret, before any key is read."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        sent = request.headers.get(SECRET_HEADER, "")
        if not constant_time_compare(sent, settings.PAYMENTS_WEBHOOK_SECRET):
            return JsonResponse({"detail": f"Missing or wrong {SECRET_HEADER} header."}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def payload(request: HttpRequest) -> dict[str, Any] | None:
    """Return the JSON object or the form fields sent, ``None`` when the body is not readable."""
    if request.content_type != "application/json":
        return request.POST.dict()
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# The provider is the only sender and has no user: its keys share the anonymous scope.
@csrf_exempt
@require_POST
@signed_by_provider
@idempotent(required=True, anonymous="shared")
def provider_webhook(request: HttpRequest) -> JsonResponse:
    """Record one provider event (``type`` and ``payout`` reference, as JSON or form fields)."""
    data = payload(request)
    if data is None:
        return JsonResponse({"detail": "Send a JSON object or form fields."}, status=400)
    kind = data.get("type")
    if kind not in STATUS_AFTER:
        return JsonResponse({"type": [f"Use one of {', '.join(STATUS_AFTER)}."]}, status=400)
    # Atomic mode: this runs in the transaction that holds the key, so the lock lasts until commit.
    payout = (
        Payout.objects.select_for_update().filter(provider_reference=data.get("payout")).first()
    )
    if payout is None:
        return JsonResponse({"payout": ["No payout has this provider reference."]}, status=404)
    event = PayoutEvent.objects.create(payout=payout, kind=kind)
    payout.status = STATUS_AFTER[kind]
    payout.save(update_fields=["status"])
    return JsonResponse(
        {
            "id": event.pk,
            "type": kind,
            "payout": payout.provider_reference,
            "status": payout.status,
        },
        status=201,
    )
