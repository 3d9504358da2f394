"""The views ``bench/cost.py`` measures: two creates, each plain, idempotent and hand-written.

- **toy**: the example's charge create (``payments.views.PlainChargeViewSet``; the idempotent
  form is ``overhead_urls.OptionalKeyChargeViewSet``, the example's ``ChargeViewSet`` with an
  optional key, as ``overhead.py`` measures it): a serializer and one INSERT in autocommit.
- **realistic**: a ledger transfer (``TransferCreate``): serializer validation, then inside
  ``transaction.atomic()`` the account read ``select_for_update()``, two reads (the currency's
  rate, the account's last transfer), an INSERT and an UPDATE.

Each create has three forms: ``plain`` (no idempotency), the library's (``IdempotentMixin``, one
class per mode and store) and ``floor``: the same protocol written by hand against the database
cursor (or the Redis client), the happy path only, no library code (``Floor``).
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any

from costapp.models import Account, FloorKey, Rate, Transfer
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from overhead_urls import OptionalKeyChargeViewSet
from payments.views import PlainChargeViewSet
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import IdempotentMixin

TTL = timedelta(hours=24)
LEASE = timedelta(seconds=30)
REPLAYED = "Idempotent-Replayed"


# The realistic create ---------------------------------------------------------------------------


class OwnAccountField(serializers.PrimaryKeyRelatedField):
    """The requesting user's account, locked until the transfer is saved."""

    def get_queryset(self) -> Any:
        return Account.objects.select_for_update().filter(owner=self.context["request"].user)


class TransferSerializer(serializers.ModelSerializer):
    account = OwnAccountField()

    class Meta:
        model = Transfer
        fields = ["id", "account", "sequence", "amount", "currency", "reference", "description"]
        read_only_fields = ["sequence"]
        extra_kwargs = {"amount": {"min_value": 1}}

    def validate_currency(self, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise serializers.ValidationError("Use a three-letter ISO 4217 code, e.g. EUR.")
        return value.upper()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["account"].currency != attrs["currency"]:
            raise serializers.ValidationError({"currency": "Not the account's currency."})
        return attrs


class TransferCreate(generics.GenericAPIView):
    """POST a transfer into the user's account (the realistic create, without idempotency)."""

    serializer_class = TransferSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.create(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        with transaction.atomic():
            serializer.is_valid(raise_exception=True)  # the locked read of the account
            data = serializer.validated_data
            account = data["account"]
            rate = Rate.objects.get(currency=data["currency"])  # read 1
            if data["amount"] < rate.minimum:
                raise serializers.ValidationError({"amount": f"At least {rate.minimum}."})
            last = (  # read 2
                Transfer.objects.filter(account=account)
                .order_by("-sequence")
                .values_list("sequence", flat=True)
                .first()
            )
            now = timezone.now()
            serializer.save(sequence=(last or 0) + 1)  # the INSERT
            Account.objects.filter(pk=account.pk).update(  # the UPDATE
                balance=F("balance") + data["amount"], last_transfer_at=now
            )
        return Response(serializer.data, status=status.HTTP_201_CREATED)


# The hand-written floor -------------------------------------------------------------------------


class Statements:
    """The floor's SQL for one database vendor, built once."""

    def __init__(self, vendor: str) -> None:
        q = connection.ops.quote_name
        table = q(FloorKey._meta.db_table)
        scope, key = q("scope"), q("key")
        self.lookup = (
            f"SELECT {q('fingerprint')}, {q('status')}, {q('content_type')}, {q('body')} "
            f"FROM {table} WHERE {scope} = %s AND {key} = %s"
        )
        columns = "scope, key, fingerprint, token, lease_expires_at, expires_at"
        names = ", ".join(q(name) for name in columns.split(", "))
        values = f"INSERT INTO {table} ({names}) VALUES (%s, %s, %s, %s, %s, %s)"
        if vendor == "postgresql":
            self.claim = f"{values} ON CONFLICT ({scope}, {key}) DO NOTHING RETURNING {q('id')}"
        else:  # MariaDB: a duplicate is a no-op update, which sets no insert id
            self.claim = f"{values} ON DUPLICATE KEY UPDATE {q('id')} = {q('id')}"
        self.returning = vendor == "postgresql"
        self.complete = (
            f"UPDATE {table} SET {q('status')} = %s, {q('content_type')} = %s, {q('body')} = %s, "
            f"{q('token')} = NULL WHERE {q('id')} = %s"
        )
        self.complete_fenced = f"{self.complete} AND {q('token')} = %s"


_STATEMENTS: dict[str, Statements] = {}
_REDIS_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return false
"""
_redis_script: list[Any] = []


def statements() -> Statements:
    found = _STATEMENTS.get(connection.vendor)
    if found is None:
        found = _STATEMENTS[connection.vendor] = Statements(connection.vendor)
    return found


def claim_row(cursor: Any, sql: Statements, values: list[Any]) -> int | None:
    """Insert the claim; return its id, or ``None`` when the key is taken."""
    cursor.execute(sql.claim, values)
    if sql.returning:
        row = cursor.fetchone()
        return None if row is None else int(row[0])
    return int(cursor.lastrowid) or None


class Floor:
    """The idempotency protocol by hand, the happy path: ``floor_mode`` is atomic, lease, redis.

    - atomic: SELECT the key; BEGIN; INSERT the claim (ON CONFLICT DO NOTHING RETURNING id, on
      MariaDB ON DUPLICATE KEY UPDATE id = id); the view; UPDATE the row with the response;
      COMMIT. No lock bound is set (the library bounds the claim's wait).
    - lease (database): SELECT; INSERT the claim with a lease token (autocommit); the view;
      UPDATE the response where the token still matches (autocommit).
    - redis: GET; SET NX PX (the claim with a token); the view; a script that sets the response
      if the claim is still ours.

    A replay is the lookup, then the stored bytes with the stored status and content type.
    """

    floor_mode = "atomic"

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        create = super().create  # type: ignore[misc]
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return create(request, *args, **kwargs)

        def run() -> Any:
            response = create(request, *args, **kwargs)
            response = self.finalize_response(request, response, *args, **kwargs)  # type: ignore[attr-defined]
            response.render()
            return response

        scope = f"{request.user.pk}:{request.method}:{request.path}"
        fingerprint = hashlib.sha256(request.body).hexdigest()
        if self.floor_mode == "redis":
            return redis_protocol(scope, key, fingerprint, run)
        return database_protocol(self.floor_mode, scope, key, fingerprint, run)


def replay(fingerprint: str, row: tuple[Any, ...]) -> HttpResponse:
    stored_fingerprint, status_code, content_type, body = row
    if status_code is None:
        return HttpResponse(status=409)
    if stored_fingerprint != fingerprint:
        return HttpResponse(status=422)
    response = HttpResponse(bytes(body), status=status_code, content_type=content_type)
    response[REPLAYED] = "true"
    return response


def database_protocol(mode: str, scope: str, key: str, fingerprint: str, run: Any) -> Any:
    sql = statements()
    with connection.cursor() as cursor:
        cursor.execute(sql.lookup, [scope, key])
        row = cursor.fetchone()
    if row is not None:
        return replay(fingerprint, row)
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    if mode == "atomic":
        with transaction.atomic():
            with connection.cursor() as cursor:
                claimed = claim_row(
                    cursor, sql, [scope, key, fingerprint, None, None, adapt(now + TTL)]
                )
            if claimed is None:
                return HttpResponse(status=409)
            response = run()
            with connection.cursor() as cursor:
                cursor.execute(
                    sql.complete,
                    [response.status_code, response["Content-Type"], response.content, claimed],
                )
        return response
    token = os.urandom(16).hex()
    with connection.cursor() as cursor:
        claimed = claim_row(
            cursor, sql, [scope, key, fingerprint, token, adapt(now + LEASE), adapt(now + TTL)]
        )
    if claimed is None:
        return HttpResponse(status=409)
    response = run()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.complete_fenced,
            [response.status_code, response["Content-Type"], response.content, claimed, token],
        )
    return response


def redis_protocol(scope: str, key: str, fingerprint: str, run: Any) -> Any:
    from django_redis import get_redis_connection

    client = get_redis_connection("redis")
    if not _redis_script:
        _redis_script.append(client.register_script(_REDIS_COMPLETE))
    name = f"idem-cost:floor:{scope}:{key}"
    found = client.get(name)
    if found is not None:
        kind, stored_fingerprint, status_code, content_type, body = found.split(b"|", 4)
        if kind != b"D":
            return HttpResponse(status=409)
        row = (stored_fingerprint.decode(), int(status_code), content_type.decode(), body)
        return replay(fingerprint, row)
    claim = f"L|{fingerprint}|{os.urandom(16).hex()}".encode()
    if not client.set(name, claim, nx=True, px=int(LEASE.total_seconds() * 1000)):
        return HttpResponse(status=409)
    response = run()
    done = b"|".join(
        [
            b"D",
            fingerprint.encode(),
            str(response.status_code).encode(),
            response["Content-Type"].encode(),
            response.content,
        ]
    )
    _redis_script[0](keys=[name], args=[claim, done, int(TTL.total_seconds() * 1000)])
    return response


# The forms of each create -----------------------------------------------------------------------

PLAIN = {"toy": PlainChargeViewSet, "realistic": TransferCreate}
#: The library's form of each create in atomic mode on the database store, with an optional key.
IDEMPOTENT = {
    "toy": OptionalKeyChargeViewSet,
    "realistic": type(
        "IdempotentTransferCreate",
        (IdempotentMixin, TransferCreate),
        {"idempotency_required": False, "__module__": __name__},
    ),
}
#: (mode, store) -> the floor's protocol.
FLOOR_MODES = {
    ("atomic", "database"): "atomic",
    ("lease", "database"): "lease",
    ("lease", "cache"): "redis",
}


class Ceiling:
    """The work every request shares, alone: the same view class, authentication and DRF
    dispatch, answering fixed bytes. A replay costs at least this; plain ÷ ceiling bounds its
    ratio."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return HttpResponse(b'{"id": 1}', status=201, content_type="application/json")


def ceiling_view(view: str) -> type:
    attributes = {"__module__": __name__}
    return type(f"Ceiling{PLAIN[view].__name__}", (Ceiling, PLAIN[view]), attributes)


class RoundTrips:
    """The plain view plus five trivial statements (``SELECT 1``) through the cursor: what a
    round trip costs inside a request."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        with connection.cursor() as cursor:
            for _ in range(5):
                cursor.execute("SELECT 1")
                cursor.fetchone()
        return super().create(request, *args, **kwargs)  # type: ignore[misc]


def trips_view(view: str) -> type:
    attributes = {"__module__": __name__}
    return type(f"RoundTrips{PLAIN[view].__name__}", (RoundTrips, PLAIN[view]), attributes)


def library_view(view: str, mode: str, store: str) -> type:
    base = IDEMPOTENT[view]
    if (mode, store) == ("atomic", "database"):
        return base
    attributes = {"idempotency_mode": mode, "idempotency_store": store, "__module__": __name__}
    return type(f"{base.__name__}_{mode}_{store}", (base,), attributes)


def floor_view(view: str, mode: str, store: str) -> type:
    attributes = {"floor_mode": FLOOR_MODES[mode, store], "__module__": __name__}
    return type(f"Floor{PLAIN[view].__name__}_{mode}_{store}", (Floor, PLAIN[view]), attributes)


def probe(request: HttpRequest) -> JsonResponse:
    """Tell the benchmark this worker's pid, its database session and the package it runs.

    ``?burn=N`` runs ``N`` rounds of busy work on the database session (MariaDB's ``BENCHMARK``),
    so the benchmark can tell which server thread serves this connection.
    """
    import django_idempotency

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid()")
        else:
            cursor.execute("SELECT CONNECTION_ID()")
        (session,) = cursor.fetchone()
        burn = int(request.GET.get("burn", 0))
        if burn and connection.vendor == "mysql":
            cursor.execute("SELECT BENCHMARK(%s, SHA2('cost', 256))", [burn])
        for _ in range(int(request.GET.get("statements", 0))):  # trivial round trips
            cursor.execute("SELECT 1")
            cursor.fetchone()
    commands = int(request.GET.get("redis", 0))
    if commands:
        from django_redis import get_redis_connection

        client = get_redis_connection("redis")
        for _ in range(commands):
            client.get("idem-cost:probe")
    return JsonResponse(
        {
            "pid": os.getpid(),
            "vendor": connection.vendor,
            "session": session,
            "package": os.path.dirname(django_idempotency.__file__),
        }
    )
