"""Views for the transaction edge tests: DDL inside the view, and views that swallow database errors."""

from __future__ import annotations

import threading
from contextlib import nullcontext

from django.db import DatabaseError, connection, connections, transaction
from django.http import JsonResponse
from rest_framework.decorators import api_view

from django_idempotency import idempotent
from django_idempotency.models import IdempotencyKey
from tests.testapp.models import Charge
from tests.testapp.views import executed

SCRATCH_TABLE = "testapp_edges_scratch"


def run_ddl() -> None:
    """Create the scratch table: on MariaDB/MySQL this commits the open transaction implicitly."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {SCRATCH_TABLE} (id INTEGER)")


def drop_scratch_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")


@api_view(["POST"])
@idempotent(fingerprint=False)
def ddl_then_raise(request):
    executed("ddl_then_raise")
    charge = Charge.objects.create(amount=int(request.data.get("amount", 0)), note="ddl")
    run_ddl()
    if request.data.get("fail"):
        raise RuntimeError("the view failed after running DDL")
    return JsonResponse({"id": charge.pk}, status=201)


def delete_key_elsewhere(key: str) -> None:
    """Delete the record of ``key`` through another connection (another thread), and wait."""

    def delete() -> None:
        try:
            IdempotencyKey.objects.filter(key=key).delete()
        finally:
            connections.close_all()

    thread = threading.Thread(target=delete, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "deleting the key record from another connection hung"


@api_view(["POST"])
@idempotent
def ddl_then_lose_record(request):
    executed("ddl_then_lose_record")
    charge = Charge.objects.create(amount=int(request.data.get("amount", 0)), note="lost")
    run_ddl()
    # The DDL committed the claim; now the record goes away before the engine completes it.
    delete_key_elsewhere(request.headers["Idempotency-Key"])
    return JsonResponse({"id": charge.pk}, status=201)


def tolerate_duplicate(charge: Charge, *, savepoint: bool) -> None:
    """Insert ``charge``'s row a second time (a unique violation) and ignore the error.

    A raw cursor, as code that tolerates a failed query typically uses: unlike the ORM's own
    writes, it does not mark the surrounding atomic block for rollback.
    """
    table = Charge._meta.db_table
    sql = f"INSERT INTO {table} (id, amount, note) VALUES (%s, %s, '')"
    try:
        with transaction.atomic() if savepoint else nullcontext(), connection.cursor() as cursor:
            cursor.execute(sql, [charge.pk, charge.amount])
    except DatabaseError:
        pass


@api_view(["POST"])
@idempotent
def swallow_error(request):
    executed("swallow_error")
    charge = Charge.objects.create(amount=int(request.data.get("amount", 0)), note="swallow")
    tolerate_duplicate(charge, savepoint=False)
    return JsonResponse({"id": charge.pk}, status=201)


@api_view(["POST"])
@idempotent
def swallow_error_in_savepoint(request):
    executed("swallow_error_in_savepoint")
    charge = Charge.objects.create(amount=int(request.data.get("amount", 0)), note="savepoint")
    tolerate_duplicate(charge, savepoint=True)
    return JsonResponse({"id": charge.pk}, status=201)
