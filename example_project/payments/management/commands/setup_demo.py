"""``manage.py setup_demo``: create the demo user and print how to try the API."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

USERNAME = "demo"
PASSWORD = "demo"

INSTRUCTIONS = """
Log in at {url}/admin/ or {url}/api/ as {username} / {password}.

Create a charge; the Idempotency-Key header makes the request safe to retry:

  curl -i -u {username}:{password} -X POST {url}/api/charges/ \\
    -H 'Content-Type: application/json' -H 'Idempotency-Key: {key}' \\
    -d '{{"amount": 1250, "currency": "EUR", "description": "Coffee beans"}}'

Send exactly the same request again: the charge is not created twice, the first
response comes back with "Idempotent-Replayed: true":

  curl -i -u {username}:{password} -X POST {url}/api/charges/ \\
    -H 'Content-Type: application/json' -H 'Idempotency-Key: {key}' \\
    -d '{{"amount": 1250, "currency": "EUR", "description": "Coffee beans"}}'

The same key with another amount is refused with 422; no key at all with 400.
Refunds work the same way: POST {url}/api/refunds/ with {{"charge": <id>, "amount": 500}}.
"""


class Command(BaseCommand):
    """Create the demo superuser if missing and print credentials and example requests."""

    help = (
        "Create the superuser 'demo' (password 'demo') unless it exists, then print example "
        "curl commands for the idempotent payments API."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--base-url``."""
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the server runs, for the printed commands (default: http://127.0.0.1:8000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Create the user and print the instructions."""
        user_model = get_user_model()
        if user_model.objects.filter(username=USERNAME).exists():
            self.stdout.write(f"The demo user {USERNAME!r} already exists.")
        else:
            user_model.objects.create_superuser(USERNAME, email="", password=PASSWORD)
            self.stdout.write(self.style.SUCCESS(f"Created the demo user {USERNAME!r}."))
        self.stdout.write(
            INSTRUCTIONS.format(
                url=options["base_url"].rstrip("/"),
                username=USERNAME,
                password=PASSWORD,
                key=uuid.uuid4(),
            )
        )
