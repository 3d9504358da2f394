"""The payments API: every way to make a DRF endpoint idempotent, and one endpoint without it.

- ``ChargeViewSet``: ``IdempotentMixin`` on a ViewSet (atomic mode, key required);
- ``create_refund``: ``@idempotent`` below ``@api_view`` on a function view;
- ``PayoutViewSet.create``: ``@idempotent`` on a ViewSet method, in lease mode, because it calls
  an external provider that a database rollback cannot undo;
- ``PlainChargeViewSet``: the charge create without idempotency, for comparisons.

The plain Django view (the provider's webhook) is in ``payments.webhooks``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import api_view
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import IdempotentMixin, idempotent
from payments.models import Charge, Payout
from payments.provider import ProviderError, provider
from payments.serializers import ChargeSerializer, PayoutSerializer, RefundSerializer


def filter_description(request: Request, queryset: Any) -> Any:
    """Return ``queryset`` narrowed to ``?description=`` when the request gives one."""
    description = request.query_params.get("description")
    return queryset if description is None else queryset.filter(description=description)


class OwnCharges:
    """What every charge endpoint shares: the serializer, the user's charges, the owner on save."""

    serializer_class = ChargeSerializer
    request: Request

    def get_queryset(self) -> Any:
        """Return the requesting user's charges, narrowed by ``?description=``."""
        charges = Charge.objects.filter(owner_id=self.request.user.pk)
        return filter_description(self.request, charges)

    def perform_create(self, serializer: Any) -> None:
        """Save the new charge as the requesting user's."""
        serializer.save(owner=self.request.user)


class ChargeViewSet(IdempotentMixin, OwnCharges, viewsets.ModelViewSet):
    """Charges of the requesting user; POST and PATCH need an ``Idempotency-Key``."""

    idempotency_required = True


class PlainChargeViewSet(OwnCharges, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """The same charge create as ``ChargeViewSet`` without idempotency: a retry charges again."""


@extend_schema(request=RefundSerializer, responses={201: RefundSerializer})
@api_view(["POST"])
@idempotent(required=True)
def create_refund(request: Request) -> Response:
    """Refund part or all of one of the user's charges; needs an ``Idempotency-Key``."""
    serializer = RefundSerializer(data=request.data, context={"request": request})
    with transaction.atomic():  # the charge stays locked from validation to save
        serializer.is_valid(raise_exception=True)
        serializer.save()
    return Response(serializer.data, status=status.HTTP_201_CREATED)


class ProviderUnavailable(APIException):
    """The payment provider failed; nothing was sent. A 503 is not stored, so a retry runs again."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "The payment provider is unavailable; nothing was sent. "
        "Retry with the same Idempotency-Key."
    )
    default_code = "provider_unavailable"
    wait = 1  # DRF's exception handler sends it as Retry-After


class PayoutViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Payouts of the requesting user, sent through the payment provider."""

    serializer_class = PayoutSerializer

    def get_queryset(self) -> Any:
        """Return the requesting user's payouts, narrowed by ``?description=``."""
        payouts = Payout.objects.filter(owner_id=self.request.user.pk).prefetch_related("events")
        return filter_description(self.request, payouts)

    # Lease mode: the key is claimed in its own short transaction and no transaction stays open
    # while the provider works. A duplicate arriving meanwhile gets 409 with Retry-After. The
    # lease outlasts the provider's slowest call; the store is Redis when REDIS_URL is set.
    @idempotent(
        required=True,
        mode="lease",
        lease=timedelta(seconds=15),
        store=settings.PAYMENTS_IDEMPOTENCY_STORE,
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Send a payout; needs an ``Idempotency-Key``."""
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> None:
        """Ask the provider to send the money, then record the payout it made."""
        data = serializer.validated_data
        simulate = data.pop("simulate", "")
        # The provider's key is scoped like ours: two users' equal keys are two payouts.
        provider_key = f"user:{self.request.user.pk}:{self.request.headers['Idempotency-Key']}"
        try:
            reference = provider.send_payout(
                amount=data["amount"],
                currency=data.get("currency", "EUR"),
                destination=data["destination"],
                idempotency_key=provider_key,
                simulate=simulate,
            )
        except ProviderError as error:
            raise ProviderUnavailable from error
        # A run repeated after a lost lease gets the provider's first transfer back: record it once.
        serializer.instance, _created = Payout.objects.get_or_create(
            provider_reference=reference, defaults={**data, "owner": self.request.user}
        )
