"""``manage.py purge_idempotency_keys``: delete expired key records in short batches."""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections, router

from django_idempotency.conf import conf
from django_idempotency.models import IdempotencyKey


def positive_int(value: str) -> int:
    """Return ``value`` as an integer >= 1; argparse reports the error with the option's name."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


def plural(count: int, singular: str, plural_form: str) -> str:
    """Return ``"<count> <noun>"`` with the noun agreeing with the count."""
    return f"{count} {singular if count == 1 else plural_form}"


class Command(BaseCommand):
    help = (
        "Delete expired idempotency key records: completed records past their TTL and abandoned "
        "lease-mode claims whose retention has ended. A live claim or a record that can still be "
        "replayed is never deleted. Records are deleted in batches by primary key, each in its "
        "own short transaction, so live requests are never blocked for longer than one batch. "
        "Can be run as a cron job or a scheduled task, e.g. hourly for a 24-hour TTL; expiry is "
        "also checked on every read, so the schedule only bounds the table's size."
    )
    # A scheduled job prints its summary line and nothing else: the project's system-check
    # warnings belong to ``manage.py check`` at deploy time, not to every hourly run.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare ``--dry-run``, ``--batch-size`` and ``--database``."""
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the records that are due and delete nothing. Default: off.",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            metavar="N",
            help=(
                "Delete at most N records per transaction. "
                "Default: IDEMPOTENCY_PURGE_BATCH_SIZE (1000 unless set)."
            ),
        )
        parser.add_argument(
            "--database",
            default=None,
            metavar="ALIAS",
            help=(
                "Purge the key records on this database alias. Default: the database the "
                "router sends IdempotencyKey writes to ('default' without a router)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Purge the due records and report the outcome according to ``--verbosity``."""
        verbosity = int(options["verbosity"])
        using = self._database(options["database"])
        batch_size = self._batch_size(options["batch_size"])
        try:
            now = conf.CLOCK()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        keys = IdempotencyKey.objects.using(using)
        batches = total_so_far = 0

        def on_batch(deleted: int) -> None:
            nonlocal batches, total_so_far
            batches += 1
            total_so_far += deleted
            if verbosity >= 2:
                self.stdout.write(
                    f"Batch {batches}: deleted {plural(deleted, 'record', 'records')} "
                    f"({total_so_far} so far)."
                )

        started = time.monotonic()
        try:
            if options["dry_run"]:
                count = keys.purge_expired(now=now, batch_size=batch_size, dry_run=True)
            else:
                count = keys.purge_expired(now=now, batch_size=batch_size, on_batch=on_batch)
        except DatabaseError as exc:
            raise CommandError(
                f"Could not purge idempotency keys on database {using!r}: {exc}"
            ) from exc
        elapsed = time.monotonic() - started
        if verbosity < 1:
            return
        if count == 0 and batches == 0:
            self.stdout.write("No idempotency keys are due for purging.")
        elif options["dry_run"]:
            self.stdout.write(
                self.style.WARNING(
                    f"Dry run: would delete "
                    f"{plural(count, 'expired idempotency key', 'expired idempotency keys')}."
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Deleted {plural(count, 'expired idempotency key', 'expired idempotency keys')}"
                    f" in {plural(batches, 'batch', 'batches')} ({elapsed:.2f} s)."
                )
            )

    def _database(self, alias: str | None) -> str:
        if alias is None:
            return router.db_for_write(IdempotencyKey)
        if alias not in connections:
            configured = ", ".join(repr(name) for name in connections)
            raise CommandError(
                f"--database {alias!r} is not a configured database; "
                f"choose one of the DATABASES aliases: {configured}."
            )
        return alias

    def _batch_size(self, value: object) -> int:
        if value is None:
            try:
                size = conf.PURGE_BATCH_SIZE
            except (TypeError, ValueError) as exc:
                raise CommandError(
                    "IDEMPOTENCY_PURGE_BATCH_SIZE must be a positive integer; "
                    "fix the setting or pass --batch-size."
                ) from exc
            if size < 1:
                raise CommandError(
                    f"IDEMPOTENCY_PURGE_BATCH_SIZE must be a positive integer, not {size!r}; "
                    "fix the setting or pass --batch-size."
                )
            return size
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise CommandError(f"--batch-size must be a positive integer, not {value!r}.")
        try:
            return positive_int(str(value))
        except argparse.ArgumentTypeError as exc:
            raise CommandError(f"--batch-size {exc}.") from exc
