"""A small HTTP client that retries the way the docs' client guide says, on the standard library."""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

#: Statuses worth retrying with the same key: in progress, throttled, and server-side failures.
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 8
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 2.0


class ServerUnreachable(Exception):
    """Nothing listens at the base URL."""


@dataclass(frozen=True)
class Reply:
    """One answer, or its absence: ``status`` is ``None`` when the client gave up waiting."""

    status: int | None
    replayed: bool = False
    body: Any = None
    retry_after: float | None = None

    @property
    def label(self) -> str:
        """Return e.g. ``201``, ``201 replayed`` or ``timeout``."""
        if self.status is None:
            return "timeout"
        return f"{self.status} replayed" if self.replayed else str(self.status)


@dataclass
class Client:
    """Sends JSON (or form) requests to one server as one user (``token``) or anonymously."""

    base_url: str
    token: str | None = None
    timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    jitter: random.Random = field(default_factory=random.Random)

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request and return its reply; a timeout or dropped connection is ``status=None``."""
        url = urlsplit(self.base_url)
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.netloc, timeout=timeout or self.timeout)
        headers = {"Accept": "application/json", **self.headers}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, url.path.rstrip("/") + path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
        except (ConnectionRefusedError, socket.gaierror) as error:
            raise ServerUnreachable(self.base_url) from error
        except (TimeoutError, ConnectionError, http.client.HTTPException):
            return Reply(status=None)
        finally:
            connection.close()
        retry_after = response.getheader("Retry-After")
        return Reply(
            status=response.status,
            replayed=response.getheader("Idempotent-Replayed") == "true",
            body=parse(content),
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    def send_until_final(
        self, method: str, path: str, *, first_timeout: float | None = None, **options: Any
    ) -> list[Reply]:
        """Send, and resend with the same key while the answer is retryable; return every reply.

        Retries follow ``Retry-After`` when the server sends it, else exponential backoff with
        jitter; a 4xx other than 409 and 429 is final.
        """
        replies = [self.send(method, path, timeout=first_timeout, **options)]
        pause = BACKOFF_FIRST
        while len(replies) < MAX_ATTEMPTS and retryable(replies[-1]):
            wait = replies[-1].retry_after
            time.sleep(wait if wait is not None else pause * self.jitter.uniform(0.5, 1.0))
            pause = min(pause * 2, BACKOFF_MAX)
            replies.append(self.send(method, path, **options))
        return replies

    def count(self, path: str, description: str) -> int:
        """Return how many objects the list endpoint at ``path`` has with this description."""
        reply = self.send("GET", f"{path}?{urlencode({'description': description})}")
        if reply.status != 200 or not isinstance(reply.body, list):
            raise RuntimeError(f"GET {path} answered {reply.label}: {reply.body!r}")
        return len(reply.body)


def retryable(reply: Reply) -> bool:
    """Return whether a client should send the request again with the same key."""
    return reply.status is None or reply.status in RETRY_STATUSES


def parse(content: bytes) -> Any:
    """Return the JSON document in ``content``, or the text when it is not JSON."""
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")
