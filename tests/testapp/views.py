"""One configurable view body, exposed through every way the app can be attached."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes, throttle_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from django_idempotency import IdempotentMixin, idempotent
from tests.testapp.models import Charge

executions: Counter[str] = Counter()
_lock = threading.Lock()


def executed(name: str) -> None:
    with _lock:
        executions[name] += 1


def perform(name: str, data: dict, user) -> HttpResponse | Response:
    """Record an execution, write a Charge, then behave as the payload asks."""
    executed(name)
    owner = user if user is not None and user.is_authenticated else None
    charge = Charge.objects.create(amount=int(data.get("amount", 0)), owner=owner, note=name)
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if data.get("rollback"):
        transaction.set_rollback(True)
    if data.get("fail") == "raise":
        raise RuntimeError("the view failed after writing")
    body = {"id": charge.pk, "amount": charge.amount, "owner": owner.pk if owner else None}
    if data.get("fail") == "500":
        return JsonResponse(body, status=500)
    if data.get("binary"):
        return HttpResponse(bytes(range(256)) * 4, content_type="application/octet-stream")
    if data.get("stream"):
        return StreamingHttpResponse(iter([b"a", b"b"]), content_type="text/plain")
    if data.get("size"):
        return HttpResponse(b"x" * int(data["size"]), content_type="text/plain")
    response = JsonResponse(body, status=int(data.get("status", 201)))
    response["Location"] = f"/charges/{charge.pk}/"
    response["X-Request-Secret"] = "first-response-only"
    if data.get("cookie"):
        response.set_cookie("session_hint", "abc")
    return response


def payload(request: HttpRequest) -> dict:
    if request.content_type == "application/json" and request.body:
        try:
            return json.loads(request.body)
        except ValueError:
            return {}
    return request.POST.dict()


@api_view(["POST", "PATCH", "GET", "HEAD", "PUT"])
@idempotent
def api_charge(request, **kwargs):
    if request.method in ("GET", "HEAD"):
        executed("api_charge_get")
        return Response({"ok": True})
    return perform("api_charge", request.data, request.user)


@api_view(["POST"])
@idempotent(required=True)
def api_charge_required(request):
    return perform("api_charge_required", request.data, request.user)


@api_view(["POST"])
@permission_classes([IsAuthenticated])
@idempotent
def api_charge_authenticated(request):
    return perform("api_charge_authenticated", request.data, request.user)


class AlwaysThrottle(BaseThrottle):
    def allow_request(self, request, view):
        return False

    def wait(self):
        return 7


@api_view(["POST"])
@throttle_classes([AlwaysThrottle])
@idempotent
def api_charge_throttled(request):
    return perform("api_charge_throttled", request.data, request.user)


@api_view(["POST"])
@idempotent(store_statuses=[*range(200, 400), 402], ttl=60, mismatch_status=409)
def api_charge_custom(request):
    return perform("api_charge_custom", request.data, request.user)


@api_view(["POST"])
@idempotent(replay="conflict")
def api_charge_secret(request):
    return perform("api_charge_secret", request.data, request.user)


@api_view(["POST"])
@idempotent(fingerprint_exclude=["client_timestamp"])
def api_charge_exclude(request):
    return perform("api_charge_exclude", request.data, request.user)


@api_view(["POST"])
@idempotent(fingerprint=False)
def api_charge_key_only(request):
    return perform("api_charge_key_only", request.data, request.user)


@api_view(["POST"])
@idempotent(anonymous="reject")
def api_charge_no_anonymous(request):
    return perform("api_charge_no_anonymous", request.data, request.user)


@api_view(["POST"])
@idempotent(lock_timeout=0)
def api_charge_nowait(request):
    return perform("api_charge_nowait", request.data, request.user)


@api_view(["POST"])
@idempotent
def api_charge_serializer(request):
    class ChargeSerializer(serializers.Serializer):
        amount = serializers.IntegerField(min_value=1)

    serializer = ChargeSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return perform("api_charge_serializer", request.data, request.user)


class ChargeAPIView(APIView):
    @idempotent
    def post(self, request):
        return perform("apiview_post", request.data, request.user)


class ChargeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Charge
        fields = ["id", "amount", "note"]


class ChargeViewSet(IdempotentMixin, viewsets.ModelViewSet):
    queryset = Charge.objects.all()
    serializer_class = ChargeSerializer
    idempotency_required = True

    def perform_create(self, serializer):
        executed("viewset_create")
        serializer.save(note="viewset")

    @action(detail=True, methods=["post"])
    def refund(self, request, pk=None):
        executed("viewset_refund")
        charge = self.get_object()
        return Response({"refunded": charge.pk}, status=status.HTTP_200_OK)


class PlainViewSet(viewsets.GenericViewSet):
    queryset = Charge.objects.all()

    @idempotent
    @action(detail=False, methods=["post"])
    def capture(self, request):
        return perform("viewset_action", request.data, request.user)


@csrf_exempt
@idempotent
def plain_charge(request):
    return perform("plain_charge", payload(request), getattr(request, "user", None))


@csrf_exempt
@idempotent
@transaction.non_atomic_requests
def plain_charge_non_atomic(request):
    return perform("plain_charge_non_atomic", payload(request), getattr(request, "user", None))


@api_view(["POST"])
@idempotent(mode="lease", lease=30)
def api_charge_lease(request):
    return perform("api_charge_lease", request.data, request.user)


@api_view(["POST"])
@idempotent(mode="lease", lease=30, wait=10)
def api_charge_lease_wait(request):
    return perform("api_charge_lease_wait", request.data, request.user)


@api_view(["POST"])
@idempotent(mode="lease", lease=0.6, heartbeat=True)
def api_charge_lease_heartbeat(request):
    return perform("api_charge_lease_heartbeat", request.data, request.user)


@api_view(["POST"])
@idempotent(mode="lease", lease=0.6)
def api_charge_lease_short(request):
    return perform("api_charge_lease_short", request.data, request.user)
