"""``manage.py retry_storm``: fire retries at the running example server and show what happened."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from payments.demo import ADMIN, ALICE, BOB, KEY_RECORDS_PATH
from payments.storm.client import Client, ServerUnreachable
from payments.storm.scenarios import Outcome, Storm
from payments.webhooks import SECRET_HEADER

COLUMNS = [("scenario", 26), ("sent", 34), ("received", 24), ("replayed", 8), ("created", 10)]


class Command(BaseCommand):
    """Send concurrent duplicates, timeouts, mismatches, failures and shared keys; print a table."""

    help = (
        "Run the retry-storm demo against the running example server (start it first, e.g. with "
        "`python3 scripts/dev.py example`, then run this in a second terminal). Exits with status 1 "
        "when any expectation fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--base-url`` and ``--timeout``."""
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="The running server (default: http://127.0.0.1:8000).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=0.5,
            help="Seconds the client waits for the slow payout before retrying (default: 0.5); "
            "keep it below the provider's PROVIDER_SLOW_DELAY.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run every scenario, print the table and verdicts; raise ``CommandError`` on a failure."""
        base_url = options["base_url"].rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(
                f"--base-url must be the server's address, e.g. http://127.0.0.1:8000, not {base_url!r}."
            )
        if options["timeout"] <= 0:
            raise CommandError(
                f"--timeout must be a positive number of seconds, not {options['timeout']}."
            )
        storm = self.prepare(base_url, timeout=options["timeout"])
        self.stdout.write(
            f"Retry storm against {base_url} (run {storm.run}; keys storm-{storm.run}-*)\n"
        )
        outcomes = []
        for scenario in storm.scenarios():
            outcome = scenario()
            outcomes.append(outcome)
            self.stdout.write(f"  {outcome.title}: {'ok' if outcome.ok else 'FAILED'}")
        self.stdout.write("")
        self.print_table(outcomes)
        self.print_verdicts(outcomes)
        records = f"{base_url}{KEY_RECORDS_PATH}"
        self.stdout.write(
            f"\nBrowse the key records in the admin (log in as {ADMIN.username} / "
            f"{ADMIN.password}):\n  {records}\n"
            f"  the concurrent charge's key: {records}?q={storm.key('concurrent')}"
        )
        if settings.PAYMENTS_IDEMPOTENCY_STORE == "cache":
            self.stdout.write(
                "  (REDIS_URL is set: the payouts' keys are in Redis, not listed there.)"
            )
        failed = [outcome.title for outcome in outcomes if not outcome.ok]
        if failed:
            raise CommandError(f"Expectations failed in: {', '.join(failed)}.")
        self.stdout.write(
            self.style.SUCCESS(f"\nAll {len(outcomes)} scenarios behaved as expected.")
        )

    def prepare(self, base_url: str, *, timeout: float) -> Storm:
        """Return the storm's clients once the server answers and accepts the demo users' tokens.

        The users and their tokens are made in this command's database, which the server must share.
        """
        try:
            Client(base_url).send("GET", "/api/")
        except ServerUnreachable:
            raise CommandError(
                f"No server answers at {base_url}. Start the example first (python3 scripts/dev.py "
                "example), then run retry_storm in a second terminal."
            ) from None
        try:
            alice, bob = (Client(base_url, token=user.ensure()[0]) for user in (ALICE, BOB))
        except DatabaseError as error:
            raise CommandError(
                f"The database is not ready ({error}); run `manage.py migrate` with the same "
                "DATABASE_URL as the server."
            ) from None
        reply = alice.send("GET", "/api/")
        if reply.status in (401, 403):
            raise CommandError(
                f"The server at {base_url} refused the demo user's token ({reply.status}): it must "
                "use the same database as this command (same DATABASE_URL)."
            )
        if reply.status != 200:
            raise CommandError(
                f"GET {base_url}/api/ answered {reply.label}; is it the example project?"
            )
        return Storm(
            alice=alice,
            bob=bob,
            webhook=Client(base_url, headers={SECRET_HEADER: settings.PAYMENTS_WEBHOOK_SECRET}),
            run=uuid.uuid4().hex[:8],
            timeout=timeout,
        )

    def print_table(self, outcomes: list[Outcome]) -> None:
        """Write one row per scenario, long cells wrapped within their column."""
        self.stdout.write("  ".join(name.ljust(width) for name, width in COLUMNS))
        self.stdout.write("  ".join("-" * width for _, width in COLUMNS))
        for outcome in outcomes:
            cells = [
                outcome.title,
                outcome.sent,
                outcome.received,
                outcome.replayed,
                outcome.created,
            ]
            wrapped = [
                textwrap.wrap(cell, width) or [""]
                for cell, (_, width) in zip(cells, COLUMNS, strict=True)
            ]
            for line in range(max(map(len, wrapped))):
                parts = [
                    (lines[line] if line < len(lines) else "").ljust(width)
                    for lines, (_, width) in zip(wrapped, COLUMNS, strict=True)
                ]
                self.stdout.write("  ".join(parts).rstrip())

    def print_verdicts(self, outcomes: list[Outcome]) -> None:
        """Write every check of every scenario with yes or NO."""
        for outcome in outcomes:
            self.stdout.write(f"\n{outcome.title}")
            for description, passed in outcome.checks:
                verdict = self.style.SUCCESS("yes") if passed else self.style.ERROR("NO ")
                self.stdout.write(f"  {verdict}  {description}")
