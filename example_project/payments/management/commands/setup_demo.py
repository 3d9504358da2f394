"""``manage.py setup_demo``: create the demo accounts and print how to try the API."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from payments.demo import ACCOUNTS, ADMIN, ALICE, KEY_RECORDS_PATH, storm_command

INSTRUCTIONS = """
URLs
{urls}

Create a charge as {alice}; the Idempotency-Key header makes the request safe to retry:

  curl -i -X POST {url}/api/charges/ -H 'Authorization: Token {token}' \\
    -H 'Content-Type: application/json' -H 'Idempotency-Key: {key}' \\
    -d '{{"amount": 1250, "currency": "EUR", "description": "Coffee beans"}}'

Send exactly the same request again: no second charge; the first response comes back with
"Idempotent-Replayed: true". The same key with another amount gets 422, no key at all 400.

Watch every retry case at once: with the server running, in a second terminal run

  {storm}
"""


class Command(BaseCommand):
    """Create the demo accounts unless they exist, then print credentials, URLs and next steps."""

    help = (
        "Create the demo accounts (superuser 'demo', API users 'alice' and 'bob'; passwords equal "
        "the usernames, for local use only) and their API tokens unless they exist, then print "
        "them with the URLs and example requests. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--base-url``."""
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the server runs, for the printed URLs (default: http://127.0.0.1:8000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Create the accounts and print the instructions."""
        url = options["base_url"].rstrip("/")
        self.stdout.write("Demo accounts (fixed passwords: for local use only)")
        tokens = {}
        for account in ACCOUNTS:
            token, created = account.ensure()
            tokens[account.username] = token
            role = "superuser: admin and API" if account.superuser else "API user"
            state = "created" if created else "exists"
            self.stdout.write(
                f"  {account.username:<6} password {account.password:<6} {role:<25} "
                f"token {token}  ({state})"
            )
        urls = [
            ("API root (browsable; log in as any account)", f"{url}/api/"),
            (f"Admin (log in as {ADMIN.username} / {ADMIN.password})", f"{url}/admin/"),
            ("Idempotency key records in the admin", f"{url}{KEY_RECORDS_PATH}"),
            ("OpenAPI schema in Swagger UI", f"{url}/api/docs/"),
        ]
        self.stdout.write(
            INSTRUCTIONS.format(
                url=url,
                urls="\n".join(f"  {label:<45} {link}" for label, link in urls),
                alice=ALICE.username,
                token=tokens[ALICE.username],
                key=uuid.uuid4(),
                storm=storm_command(url),
            )
        )
