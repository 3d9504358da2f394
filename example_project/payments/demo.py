"""The demo accounts that ``setup_demo`` creates and ``retry_storm`` uses; for local use only.

The passwords are fixed and printed, so never run the example where others can reach it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

#: Where the key records are browsed in the admin.
KEY_RECORDS_PATH = "/admin/django_idempotency/idempotencykey/"


@dataclass(frozen=True)
class Account:
    """A demo login: the superuser for the admin, or an API user."""

    username: str
    password: str
    superuser: bool = False

    def ensure(self) -> tuple[str, bool]:
        """Create the user and its API token unless they exist; return the token and whether created."""
        user, created = get_user_model().objects.get_or_create(
            username=self.username,
            defaults={"is_staff": self.superuser, "is_superuser": self.superuser},
        )
        if created:
            user.set_password(self.password)
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        return token.key, created


ADMIN = Account("demo", "demo", superuser=True)
ALICE = Account("alice", "alice")
BOB = Account("bob", "bob")
ACCOUNTS = (ADMIN, ALICE, BOB)


def storm_command(base_url: str) -> str:
    """Return the shell command that runs the retry-storm demo, as typed from the repository root."""
    root = Path(settings.BASE_DIR).parent
    python = Path(os.path.abspath(sys.executable))  # not resolve(): keep the venv's own path
    shown = python.relative_to(root) if python.is_relative_to(root) else python
    return f"{shown} example_project/manage.py retry_storm --base-url {base_url}"
