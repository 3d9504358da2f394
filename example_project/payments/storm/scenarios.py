"""The retry-storm scenarios: what a flaky network and an impatient client do to a payments API.

Each scenario sends real HTTP requests, counts what the server created through its list
endpoints, and states its expectations as checks.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from payments.storm.client import Client, Reply

T = TypeVar("T")

CHARGES = "/api/charges/"
PLAIN_CHARGES = "/api/plain-charges/"
PAYOUTS = "/api/payouts/"
WEBHOOK = "/webhooks/provider/"
DUPLICATES = 10
IBAN = "DE89370400440532013000"


@dataclass
class Outcome:
    """What one scenario sent, what came back, what it created, and whether that was right."""

    title: str
    sent: str
    replies: list[Reply]
    created: str
    checks: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether every check held."""
        return all(passed for _, passed in self.checks)

    @property
    def received(self) -> str:
        """Return the answers counted by kind, in the order they first came: ``201 ×1, 409 ×3``."""
        counts = Counter(reply.label for reply in self.replies)
        return ", ".join(f"{label} ×{count}" for label, count in counts.items())

    @property
    def replayed(self) -> str:
        """Return how many of the successful answers were replays: ``9 of 10``."""
        successes = [r for r in self.replies if r.status is not None and 200 <= r.status < 300]
        return f"{sum(r.replayed for r in successes)} of {len(successes)}"


@dataclass
class Storm:
    """Runs every scenario against one server; ``run`` makes this run's keys and data unique."""

    alice: Client
    bob: Client
    webhook: Client
    run: str
    timeout: float
    payout: dict[str, Any] = field(default_factory=dict)

    def key(self, name: str) -> str:
        """Return this run's idempotency key for a scenario."""
        return f"storm-{self.run}-{name}"

    def tag(self, name: str) -> str:
        """Return the description that marks the objects a scenario creates."""
        return f"retry storm {self.run}: {name}"

    def scenarios(self) -> list[Callable[[], Outcome]]:
        """Return the scenarios in the order they run."""
        return [
            self.without_key,
            self.concurrent_duplicates,
            self.retry_after_timeout,
            self.mismatched_payload,
            self.retry_after_failure,
            self.two_users,
            self.webhook_redelivered,
        ]

    def without_key(self) -> Outcome:
        """The contrast: the same burst to the endpoint without idempotency charges ten times."""
        body = {"amount": 500, "currency": "EUR", "description": self.tag("no key")}
        replies = burst(DUPLICATES, lambda: self.alice.send("POST", PLAIN_CHARGES, json_body=body))
        charges = self.alice.count(CHARGES, body["description"])
        return Outcome(
            "0. no idempotency (contrast)",
            f"{DUPLICATES} × POST {PLAIN_CHARGES} at once, no key",
            replies,
            f"{charges} charges",
            [
                (
                    f"{DUPLICATES} identical requests without a key made {DUPLICATES} charges "
                    "(the bug the keys prevent)",
                    charges == DUPLICATES,
                )
            ],
        )

    def concurrent_duplicates(self) -> Outcome:
        """Ten copies of one charge at the same instant: one runs, the others get its response."""
        body = {"amount": 1250, "currency": "EUR", "description": self.tag("concurrent")}
        key = self.key("concurrent")
        runs = burst(
            DUPLICATES,
            lambda: self.alice.send_until_final("POST", CHARGES, json_body=body, key=key),
        )
        finals = [replies[-1] for replies in runs]
        every = [reply for replies in runs for reply in replies]
        charges = self.alice.count(CHARGES, body["description"])
        ids = {reply.body.get("id") for reply in finals if isinstance(reply.body, dict)}
        return Outcome(
            "1. concurrent duplicates",
            f"{DUPLICATES} × POST {CHARGES} at once, one key",
            every,
            f"{charges} charge",
            [
                (
                    "no request failed (no 5xx, no timeout)",
                    all(r.status is not None and r.status < 500 for r in every),
                ),
                ("exactly one charge for the key", charges == 1),
                (
                    f"all {DUPLICATES} clients got 201 with the same charge",
                    all(r.status == 201 for r in finals) and len(ids) == 1,
                ),
                (
                    "the view ran once; every other answer was a replay",
                    sum(not r.replayed for r in finals) == 1,
                ),
            ],
        )

    def retry_after_timeout(self) -> Outcome:
        """The provider is slow, the client gives up waiting and retries: one payout."""
        body = {
            "amount": 9900,
            "currency": "EUR",
            "destination": IBAN,
            "description": self.tag("timeout"),
            "simulate": "slow",
        }
        replies = self.alice.send_until_final(
            "POST", PAYOUTS, json_body=body, key=self.key("timeout"), first_timeout=self.timeout
        )
        payouts = self.alice.count(PAYOUTS, body["description"])
        return Outcome(
            "2. retry after a client timeout",
            f"POST {PAYOUTS} (slow provider), client timeout {self.timeout:g} s, retries",
            replies,
            f"{payouts} payout",
            [
                ("the first attempt timed out on the client", replies[0].status is None),
                (
                    "a retry got the first attempt's 201 as a replay",
                    replies[-1].status == 201 and replies[-1].replayed,
                ),
                ("exactly one payout for the key", payouts == 1),
            ],
        )

    def mismatched_payload(self) -> Outcome:
        """The key is reused for another amount: 422, and the first charge stays the only one."""
        body = {"amount": 2000, "currency": "EUR", "description": self.tag("mismatch")}
        key = self.key("mismatch")
        first = self.alice.send_until_final("POST", CHARGES, json_body=body, key=key)
        changed = self.alice.send("POST", CHARGES, json_body={**body, "amount": 2500}, key=key)
        charges = self.alice.count(CHARGES, body["description"])
        return Outcome(
            "3. same key, other payload",
            f"POST {CHARGES} 20.00 EUR, then 25.00 EUR with the same key",
            [*first, changed],
            f"{charges} charge",
            [
                ("the first request got 201", first[-1].status == 201),
                ("the changed payload got 422 and ran nothing", changed.status == 422),
                ("exactly one charge for the key", charges == 1),
            ],
        )

    def retry_after_failure(self) -> Outcome:
        """The provider fails once: the 503 is not stored, the retry runs again, later ones replay."""
        body = {
            "amount": 4200,
            "currency": "EUR",
            "destination": IBAN,
            "description": self.tag("failure"),
            "simulate": "fail_first",
        }
        key = self.key("failure")
        replies = self.alice.send_until_final("POST", PAYOUTS, json_body=body, key=key)
        again = self.alice.send("POST", PAYOUTS, json_body=body, key=key)
        if isinstance(again.body, dict):
            self.payout = again.body
        payouts = self.alice.count(PAYOUTS, body["description"])
        return Outcome(
            "4. retry after a failure",
            f"POST {PAYOUTS} (provider fails once), retries, then once more",
            [*replies, again],
            f"{payouts} payout",
            [
                ("the first attempt failed with 503", replies[0].status == 503),
                (
                    "the retry ran the view again: 201, not a replay of the failure",
                    replies[-1].status == 201 and not replies[-1].replayed,
                ),
                ("a later duplicate replays the 201", again.status == 201 and again.replayed),
                ("exactly one payout for the key", payouts == 1),
            ],
        )

    def webhook_redelivered(self) -> Outcome:
        """The provider delivers its webhook three times at once: the event is recorded once."""
        reference = self.payout.get("provider_reference", "")
        form = {"type": "payout.paid", "payout": reference}
        runs = burst(
            3,
            lambda: self.webhook.send_until_final(
                "POST", WEBHOOK, form=form, key=self.key("event")
            ),
        )
        reply = self.alice.send("GET", f"{PAYOUTS}{self.payout.get('id')}/")
        events = reply.body.get("events", []) if isinstance(reply.body, dict) else []
        return Outcome(
            "6. webhook redelivered",
            f"3 × POST {WEBHOOK} at once (form fields, plain Django view), one key",
            [reply for replies in runs for reply in replies],
            f"{len(events)} event",
            [
                ("every delivery got 201", all(replies[-1].status == 201 for replies in runs)),
                ("the payout has exactly one event", events == ["payout.paid"]),
            ],
        )

    def two_users(self) -> Outcome:
        """Two users happen to pick the same key: each gets a charge of their own."""
        body = {"amount": 700, "currency": "EUR", "description": self.tag("two users")}
        key = self.key("shared")
        alice = self.alice.send_until_final("POST", CHARGES, json_body=body, key=key)
        bob = self.bob.send_until_final("POST", CHARGES, json_body=body, key=key)
        counts = (
            self.alice.count(CHARGES, body["description"]),
            self.bob.count(CHARGES, body["description"]),
        )
        fresh = all(r[-1].status == 201 and not r[-1].replayed for r in (alice, bob))
        return Outcome(
            "5. two users, one key",
            f"POST {CHARGES} as alice, then as bob, same key and body",
            [*alice, *bob],
            f"{sum(counts)} charges",
            [
                ("both got a new charge (201, no replay)", fresh),
                ("one charge per user for the key", counts == (1, 1)),
            ],
        )


def burst(count: int, send: Callable[[], T]) -> list[T]:
    """Return the results of ``send`` called by ``count`` threads released at the same moment."""
    start = threading.Barrier(count)

    def go() -> T:
        start.wait()
        return send()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(go) for _ in range(count)]
        return [future.result() for future in futures]
