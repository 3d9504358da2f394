from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_idempotency.models import IdempotencyKey
from tests.factories import IdempotencyKeyFactory

pytestmark = pytest.mark.django_db


def test_str_is_the_key():
    assert str(IdempotencyKeyFactory(key="abc")) == "abc"


def test_scope_and_key_are_unique_together():
    IdempotencyKeyFactory(scope="s", key="k")
    IdempotencyKeyFactory(scope="t", key="k")
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyKeyFactory(scope="s", key="k")


def test_expired_selects_records_whose_retention_ended():
    live = IdempotencyKeyFactory()
    expired = IdempotencyKeyFactory(expired=True)
    IdempotencyKeyFactory(in_progress=True)
    assert list(IdempotencyKey.objects.expired(timezone.now())) == [expired]
    assert live in IdempotencyKey.objects.expired(timezone.now() + timedelta(days=2))


def test_factories_cover_every_state():
    assert IdempotencyKeyFactory().status == "completed"
    assert IdempotencyKeyFactory(in_progress=True).status == "in_progress"
    stale = IdempotencyKeyFactory(stale_lease=True)
    assert stale.lease_expires_at < timezone.now()
    assert IdempotencyKeyFactory(without_body=True).response_body is None
