"""The two ways to make a DRF endpoint idempotent: the class mixin and the function decorator."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework import status, viewsets
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import IdempotentMixin, idempotent
from payments.models import Charge
from payments.serializers import ChargeSerializer, RefundSerializer


class ChargeViewSet(IdempotentMixin, viewsets.ModelViewSet):
    """Charges of the requesting user; POST and PATCH need an ``Idempotency-Key``."""

    serializer_class = ChargeSerializer
    idempotency_required = True

    def get_queryset(self) -> Any:
        """Return the requesting user's charges."""
        return Charge.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: Any) -> None:
        """Save the new charge as the requesting user's."""
        serializer.save(owner=self.request.user)


@api_view(["POST"])
@idempotent(required=True)
def create_refund(request: Request) -> Response:
    """Refund part or all of one of the user's charges; needs an ``Idempotency-Key``."""
    serializer = RefundSerializer(data=request.data, context={"request": request})
    with transaction.atomic():  # the charge stays locked from validation to save
        serializer.is_valid(raise_exception=True)
        serializer.save()
    return Response(serializer.data, status=status.HTTP_201_CREATED)
