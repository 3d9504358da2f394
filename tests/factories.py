"""factory-boy factories: users, and key records in every state."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_idempotency.models import IdempotencyKey


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("secret")


#: What every unfinished claim looks like; the traits differ only in the lease.
IN_PROGRESS = {
    "status": IdempotencyKey.Status.IN_PROGRESS,
    "response_status": None,
    "response_headers": factory.LazyFunction(list),
    "response_body": None,
    "completed_at": None,
    "expires_at": None,
    "fencing_token": 1,
}


class IdempotencyKeyFactory(factory.django.DjangoModelFactory):
    """A completed, live record by default; traits give the other states."""

    class Meta:
        model = IdempotencyKey

    scope = "user:1 POST api/charges/"
    key = factory.Sequence(lambda n: f"key-{n}")
    method = "POST"
    path = "/api/charges/"
    fingerprint = "0" * 64
    status = IdempotencyKey.Status.COMPLETED
    response_status = 201
    response_headers = factory.LazyFunction(lambda: [["Content-Type", "application/json"]])
    response_body = b'{"id": 1}'
    created_at = factory.LazyFunction(timezone.now)
    completed_at = factory.LazyAttribute(lambda o: o.created_at)
    expires_at = factory.LazyAttribute(lambda o: o.created_at + timedelta(hours=24))

    class Params:
        expired = factory.Trait(
            created_at=factory.LazyFunction(lambda: timezone.now() - timedelta(hours=25)),
        )
        in_progress = factory.Trait(
            **IN_PROGRESS,
            lease_expires_at=factory.LazyFunction(lambda: timezone.now() + timedelta(seconds=30)),
        )
        stale_lease = factory.Trait(
            **IN_PROGRESS,
            lease_expires_at=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=10)),
        )
        without_body = factory.Trait(response_body=None)
