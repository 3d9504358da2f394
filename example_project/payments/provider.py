"""A stand-in for an external payment provider: slow, sometimes down, idempotent on its own key.

Real providers take an idempotency key of their own. Passing one down matters in lease mode: a
view whose first run died after the provider acted runs again, and the provider then answers
with the transfer it already made instead of sending the money twice.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

from django.conf import settings

SLOW = "slow"
FAIL_FIRST = "fail_first"
#: What a demo payload may ask of the provider: take ``SLOW_DELAY`` seconds, or fail once per key.
SIMULATIONS = (SLOW, FAIL_FIRST)


class ProviderError(Exception):
    """The provider failed or did not answer; nothing was sent, and the call may be retried."""


class FakeProvider:
    """Sends payouts after a random delay, failing at the configured rate; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random: random.Random | None = None
        self._transfers: dict[str, str] = {}
        self._failed_once: set[str] = set()

    def reset(self) -> None:
        """Forget every transfer and draw from the configured seed again."""
        with self._lock:
            self._random = None
            self._transfers.clear()
            self._failed_once.clear()

    def send_payout(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        idempotency_key: str,
        simulate: str = "",
    ) -> str:
        """Send a payout and return the provider's reference; raise ``ProviderError`` when down.

        The same ``idempotency_key`` always gets the same reference: the money moves once.
        """
        config = settings.PAYMENTS_PROVIDER
        if simulate == SLOW:
            delay, fail = float(config["SLOW_DELAY"]), False
        elif simulate == FAIL_FIRST:
            with self._lock:
                fail = idempotency_key not in self._failed_once
                self._failed_once.add(idempotency_key)
            delay = 0.0
        else:
            delay, fail = self._draw(config)
        time.sleep(delay)
        if fail:
            raise ProviderError("The payment provider is temporarily unavailable.")
        with self._lock:
            return self._transfers.setdefault(idempotency_key, f"po_{uuid.uuid4().hex[:24]}")

    def _draw(self, config: dict[str, Any]) -> tuple[float, bool]:
        """Return the next random delay and whether this call fails."""
        with self._lock:
            if self._random is None:
                seed = config["SEED"]
                self._random = random.Random(None if seed == "random" else seed)
            delay = self._random.uniform(0, float(config["MAX_DELAY"]))
            return delay, self._random.random() < float(config["FAILURE_RATE"])


provider = FakeProvider()
