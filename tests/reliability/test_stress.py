"""Concurrent duplicates through a real multi-process server: one execution per key, no 5xx.

Every request goes to a gunicorn with several sync workers, each with its own database
connection, so the duplicates meet only in the database, as they do in production.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from django.db.models import Count

from tests.reliability.server import Reply, Server
from tests.testapp.models import Charge

pytestmark = [pytest.mark.needs_row_locks, pytest.mark.timeout(150)]

URL = "/charges/"
DUPLICATED_KEYS = 50
DUPLICATES = 20
#: Requests per duplicated key that reuse its key for another payload.
MISMATCHES = 3
UNIQUE = 60
#: Keys completed before the storm, then reused with another payload during it.
COMPLETED_KEYS = 10
CLIENT_THREADS = 32


@dataclass(frozen=True)
class Sent:
    """A request of the storm and its answer."""

    key: str
    ref: str
    amount: int
    reply: Reply


def storm(server: Server, requests: list[Callable[[], Sent]]) -> list[Sent]:
    """Send ``requests`` in a shuffled order from many client threads; return every answer."""
    random.Random(6).shuffle(requests)
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(lambda send: send(), requests))


def sender(server: Server, auth: str, key: str, ref: str, amount: int, sleep: float = 0.0):
    def send() -> Sent:
        data = {"ref": ref, "amount": amount, "sleep": sleep}
        return Sent(key, ref, amount, server.post_json(URL, data, key=key, auth=auth))

    return send


def executions() -> Counter[str]:
    """Return how many Charges each ``ref`` committed: one per execution of the view."""
    rows = Charge.objects.values("note").annotate(n=Count("id"))
    return Counter({row["note"]: row["n"] for row in rows})


def test_duplicates_mismatches_and_unique_keys_under_load(server, make_user):
    auth = make_user("alice")
    for index in range(COMPLETED_KEYS):
        data = {"ref": f"done-{index}", "amount": 1}
        first = server.post_json(URL, data, key=f"done-{index}", auth=auth)
        assert first.status == 201, first

    requests = []
    for index in range(DUPLICATED_KEYS):
        key = ref = f"dup-{index}"
        # The first execution sleeps a little so that its duplicates arrive while it runs.
        requests += [sender(server, auth, key, ref, index, 0.1) for _ in range(DUPLICATES)]
        requests += [sender(server, auth, key, ref, 1000 + index, 0.1) for _ in range(MISMATCHES)]
    requests += [sender(server, auth, f"unique-{n}", f"unique-{n}", n) for n in range(UNIQUE)]
    requests += [
        sender(server, auth, f"done-{index}", f"done-{index}", 2)
        for index in range(COMPLETED_KEYS)
        for _ in range(MISMATCHES)
    ]
    answers = storm(server, requests)

    statuses = Counter(sent.reply.status for sent in answers)
    assert not [s for s in answers if s.reply.status >= 500], (statuses, server.output()[-4000:])
    counted = executions()
    duplicated = {f"dup-{index}" for index in range(DUPLICATED_KEYS)}
    assert sum(counted[ref] for ref in duplicated) == DUPLICATED_KEYS
    assert {ref: counted[ref] for ref in duplicated} == dict.fromkeys(duplicated, 1)
    assert all(counted[f"unique-{n}"] == 1 for n in range(UNIQUE))
    assert all(counted[f"done-{index}"] == 1 for index in range(COMPLETED_KEYS))

    executed_amount = dict(Charge.objects.values_list("note", "amount"))
    by_key: dict[str, list[Sent]] = defaultdict(list)
    for sent in answers:
        by_key[sent.key].append(sent)
    for key, sents in by_key.items():
        if key.startswith("unique-"):
            (only,) = sents
            assert only.reply.status == 201 and not only.reply.replayed, only.reply
        elif key.startswith("done-"):
            # The key completed before the storm with another payload: every reuse is refused.
            assert [s.reply.status for s in sents] == [422] * MISMATCHES, sents
            for sent in sents:
                assert sent.reply.headers["content-type"] == "application/problem+json"
        else:
            winner = executed_amount[key]
            originals = [s for s in sents if s.amount == winner and s.reply.status == 201]
            first = [s for s in originals if not s.reply.replayed]
            assert len(first) == 1, (key, sents)
            body = first[0].reply.body
            for sent in sents:
                if sent.amount != winner:
                    # Another payload under a key that another payload won.
                    assert sent.reply.status in (422, 409), (key, sent.reply)
                elif sent.reply.status == 201:
                    assert sent.reply.body == body, (key, sent.reply)
                else:
                    assert sent.reply.status == 409, (key, sent.reply)
                if sent.reply.status in (409, 422):
                    assert sent.reply.headers["content-type"] == "application/problem+json"
    print(f"\nstatuses: {dict(statuses)}")


def test_shared_keys_across_users_never_leak(server, make_user):
    users = {name: make_user(name) for name in ("ann", "bob", "cid", "dee", "eve")}
    keys = [f"shared-{index}" for index in range(10)]

    def send(name: str, key: str) -> tuple[str, str, Reply]:
        # The payload is the same for every user: only the scope keeps them apart.
        data = {"ref": key, "amount": 5, "sleep": 0.02}
        return name, key, server.post_json(URL, data, key=key, auth=users[name])

    requests = [(name, key) for name in users for key in keys for _ in range(4)]
    random.Random(7).shuffle(requests)
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        answers = list(pool.map(lambda args: send(*args), requests))

    bodies: dict[tuple[str, str], set[bytes]] = defaultdict(set)
    for name, key, reply in answers:
        assert reply.status in (201, 409), reply
        if reply.status == 201:
            assert reply.json()["owner"] == name, (name, reply)
            bodies[name, key].add(reply.body)
    assert all(len(found) == 1 for found in bodies.values()), bodies
    owners = Counter(Charge.objects.values_list("owner__username", "note"))
    assert owners == Counter({(name, key): 1 for name in users for key in keys})
