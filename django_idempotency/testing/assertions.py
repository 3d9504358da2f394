"""``assert_idempotent``: prove that an endpoint runs once for a burst of identical requests."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.db import connections
from django.db.models import QuerySet
from django.http import HttpResponse
from django.test import Client

from django_idempotency.conf import conf
from django_idempotency.responses import PROBLEM_CONTENT_TYPE
from django_idempotency.testing.records import encode_body

Counter = Callable[[], int] | QuerySet[Any]
BurstMode = Literal["auto", "threads", "sequential"]


@dataclass(frozen=True)
class IdempotencyCheck:
    """What :func:`assert_idempotent` sent and got back, for further assertions."""

    key: str
    #: The response of the request that ran the view.
    first: HttpResponse
    #: The burst of identical requests (``first`` among them), in the order they were sent.
    burst: tuple[HttpResponse, ...]
    #: The sequential retry sent after the burst finished.
    retry: HttpResponse
    #: Whether the burst ran in threads (``False``: one after another).
    concurrent: bool
    #: How much the side-effect counter grew.
    executions: int

    @property
    def responses(self) -> tuple[HttpResponse, ...]:
        """Return every response: the burst's, then the retry."""
        return (*self.burst, self.retry)


def assert_idempotent(
    client: Client,
    method: str,
    url: str,
    data: Any = None,
    *,
    executions: Counter,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    concurrent: int = 5,
    burst: BurstMode = "auto",
    expect_replay: bool = True,
    allow_unavailable: bool = False,
) -> IdempotencyCheck:
    """Send ``concurrent`` identical requests with one key, then a retry; assert the view ran once.

    ``executions`` counts the view's side effects: a callable returning a number or a queryset.
    Every reply must equal the one that ran the view (status and body), or be a 409 problem while
    it was in progress; the retry must be a replay (a 409 problem when ``expect_replay`` is false,
    for ``replay="conflict"`` views). The burst runs in threads, one client each, unless the test
    holds a transaction open (``TestCase``): then ``burst="auto"`` sends it sequentially, and
    ``burst="threads"`` fails. ``allow_unavailable`` also accepts 503 problems in the burst (the
    store refused the request, the view did not run). Returns an :class:`IdempotencyCheck`;
    raises ``AssertionError``.
    """
    if concurrent < 1:
        raise ValueError(f"concurrent must be at least 1, not {concurrent!r}.")
    if burst not in ("auto", "threads", "sequential"):
        raise ValueError(f"burst must be 'auto', 'threads' or 'sequential', not {burst!r}.")
    key = uuid.uuid4().hex if key is None else key
    extra = {_meta_name(name): value for name, value in (headers or {}).items()}
    extra[_meta_name(conf.HEADER)] = key
    body = encode_body(data, content_type)

    def send(using: Client) -> HttpResponse:
        handler = getattr(using, method.lower())
        response: HttpResponse = handler(url, body, content_type=content_type, **extra)
        return response

    threads = _use_threads(burst, concurrent)
    before = _count(executions)
    responses = _burst(client, send, concurrent) if threads else [send(client)]
    if not threads:
        responses += [send(client) for _ in range(concurrent - 1)]
    retry = send(client)
    ran = _count(executions) - before

    unavailable = [r for r in responses if r.status_code == 503 and _is_problem(r)]
    _check(
        allow_unavailable or not unavailable,
        lambda: _describe(
            f"{len(unavailable)} of {len(responses)} identical requests found the key store "
            "unavailable (503); pass allow_unavailable=True if the test means it",
            unavailable[0] if unavailable else responses[0],
        ),
    )
    first = _first(responses)
    for response in responses:
        if response is not first and not _refused(response):
            _assert_replay(first, response, "a duplicate in the burst")
    if expect_replay:
        _assert_replay(first, retry, "the sequential retry")
    else:
        _check(
            _conflict(retry),
            lambda: _describe("the sequential retry should be a 409 problem", retry),
        )
    _check(
        ran == 1,
        lambda: (
            f"The view ran {ran} times for one Idempotency-Key ({len(responses)} identical "
            f"requests {'at once' if threads else 'in a row'}, then a retry); it must run exactly once."
        ),
    )
    return IdempotencyCheck(key, first, tuple(responses), retry, threads, ran)


def _use_threads(burst: BurstMode, concurrent: int) -> bool:
    """Return whether the burst can run in threads: not while the test holds a transaction open."""
    in_transaction = any(connection.in_atomic_block for connection in connections.all())
    if burst == "threads" and in_transaction:
        raise AssertionError(
            "A concurrent burst needs the test's writes committed, and this test runs inside a "
            "transaction (Django's TestCase, or pytest's django_db without transaction=True). "
            "Use TransactionTestCase or @pytest.mark.django_db(transaction=True), or "
            "burst='sequential'."
        )
    return burst != "sequential" and concurrent > 1 and not in_transaction


def _burst(client: Client, send: Callable[[Client], HttpResponse], n: int) -> list[HttpResponse]:
    """Return the responses to ``n`` requests sent at once, each thread with its own client."""
    barrier = threading.Barrier(n)
    results: list[HttpResponse | BaseException | None] = [None] * n

    def run(index: int, own: Client) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = send(own)
        except BaseException as error:  # re-raised in the test's thread below
            results[index] = error
        finally:
            connections.close_all()

    workers = [
        threading.Thread(target=run, args=(i, _clone(client)), daemon=True) for i in range(n)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    responses: list[HttpResponse] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        if result is None:
            raise AssertionError("A request of the concurrent burst did not finish in 120 s.")
        responses.append(result)
    return responses


def _clone(client: Client) -> Client:
    """Return a copy of ``client`` with its own cookies; the test client is not thread-safe."""
    clone = copy.copy(client)
    clone.cookies = copy.deepcopy(client.cookies)
    return clone


def _first(responses: list[HttpResponse]) -> HttpResponse:
    """Return the one response that ran the view: neither a replay nor a 409."""
    ran = [r for r in responses if not _replayed(r) and not _refused(r)]
    _check(
        len(ran) == 1,
        lambda: (
            f"{len(ran)} of {len(responses)} identical requests were answered by the view "
            f"itself (statuses {[r.status_code for r in responses]}); exactly one should be, the "
            "others replays or 409 while it ran."
        ),
    )
    return ran[0]


def _assert_replay(first: HttpResponse, response: HttpResponse, what: str) -> None:
    """Assert ``response`` replays ``first``: same status and body, marked as replayed."""
    _check(
        response.status_code == first.status_code and response.content == first.content,
        lambda: _describe(
            f"{what} should replay the first response ({first.status_code})", response
        ),
    )
    _check(
        _replayed(response),
        lambda: _describe(f"{what} lacks {conf.REPLAYED_HEADER}: true", response),
    )


def _check(ok: bool, message: Callable[[], str]) -> None:
    """Raise ``AssertionError`` with ``message()`` unless ``ok``; unlike ``assert``, survives -O."""
    if not ok:
        raise AssertionError(message())


def _replayed(response: HttpResponse) -> bool:
    return response.headers.get(conf.REPLAYED_HEADER, "").lower() == "true"


def _conflict(response: HttpResponse) -> bool:
    return response.status_code == 409 and _is_problem(response)


def _refused(response: HttpResponse) -> bool:
    """Return whether the app answered ``response`` without running the view: in progress or 503."""
    statuses = {409, conf.IN_PROGRESS_STATUS, 503}
    return response.status_code in statuses and _is_problem(response)


def _is_problem(response: HttpResponse) -> bool:
    return response.headers.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE)


def _describe(message: str, response: HttpResponse) -> str:
    return f"{message}; got {response.status_code}: {response.content[:300]!r}"


def _count(executions: Counter) -> int:
    """Return the side-effect count now; a queryset is counted afresh every time."""
    if isinstance(executions, QuerySet):
        return int(executions.all().count())
    return int(executions())


def _meta_name(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")
