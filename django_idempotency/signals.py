"""Signals sent once per handled request, named after the engine's decision.

Each is sent with ``sender=IdempotencyKey`` and two keyword arguments: ``request`` (the
``HttpRequest``) and ``event`` (an :class:`~django_idempotency.events.Event` with the decision,
scope, hashed key, status and timing). Receivers run synchronously inside the request; an
exception in a receiver is logged and never changes the response.
"""

from __future__ import annotations

from django.dispatch import Signal

#: The view ran and its response was stored for replay.
executed = Signal()
#: A stored response was replayed; the view did not run.
replayed = Signal()
#: The key was reused with another payload; nothing ran.
mismatch = Signal()
#: The key's first request was still running; the duplicate was refused (409).
in_progress = Signal()
#: The view ran but its outcome was not stored (an exception, an unstored status, a rollback),
#: so the key is free again. (Keys released in the admin are logged, not signalled.)
released = Signal()
#: Lease mode: the view finished after its lease was taken over; its response was not stored.
#: Atomic mode: the claim was gone when the response was to be stored (a statement in the view
#: committed it early, and it was deleted since).
lease_lost = Signal()
#: The request was refused before any store was asked: a missing or malformed key, a body the
#: fingerprint cannot read within Django's limits, a keyed request with no principal.
rejected = Signal()
