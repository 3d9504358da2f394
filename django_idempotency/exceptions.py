"""The errors the app answers with; each is a DRF ``APIException`` with its own problem ``type``."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import APIException


class IdempotencyError(APIException):
    """Base of every error the app produces; renders as one RFC 9457 problem."""

    status_code = 400
    default_detail = _("The request could not be handled idempotently.")
    default_code = "idempotency_error"
    problem_slug = "idempotency-error"
    title = _("Idempotency error")

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        if status is not None:
            self.status_code = status
        # DRF's default exception handler sends ``Retry-After`` from ``wait``.
        self.wait = retry_after
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)
        self.extensions = dict(extensions or {})


class KeyMissing(IdempotencyError):
    """The view requires an ``Idempotency-Key`` and the request has none."""

    default_detail = _("This endpoint requires an Idempotency-Key header.")
    default_code = "idempotency_key_missing"
    problem_slug = "key-missing"
    title = _("Idempotency-Key is missing")


class KeyInvalid(IdempotencyError):
    """The ``Idempotency-Key`` header is malformed, out of bounds or repeated."""

    default_detail = _("The Idempotency-Key header is not a valid key.")
    default_code = "idempotency_key_invalid"
    problem_slug = "key-invalid"
    title = _("Idempotency-Key is invalid")


class KeyMismatch(IdempotencyError):
    """The key was first used with another payload."""

    status_code = 422
    default_detail = _(
        "This Idempotency-Key was already used with a different request payload. "
        "Use a new key for a new operation."
    )
    default_code = "idempotency_key_mismatch"
    problem_slug = "key-mismatch"
    title = _("Idempotency-Key reused with a different payload")


class RequestInProgress(IdempotencyError):
    """The first request with this key has not finished yet."""

    status_code = 409
    default_detail = _("A request with this Idempotency-Key is still being processed. Retry later.")
    default_code = "idempotency_key_in_progress"
    problem_slug = "in-progress"
    title = _("A request with this Idempotency-Key is in progress")


class AlreadyProcessed(IdempotencyError):
    """The key completed, but its response was not kept for replay (too large, streamed, or secret)."""

    status_code = 409
    default_detail = _(
        "A request with this Idempotency-Key was already processed; "
        "its response cannot be replayed."
    )
    default_code = "idempotency_key_already_processed"
    problem_slug = "already-processed"
    title = _("Request already processed")


class AuthenticationRequired(IdempotencyError):
    """Anonymous requests may not use keys on this view."""

    status_code = 403
    default_detail = _("Idempotency-Key requests to this endpoint require authentication.")
    default_code = "idempotency_authentication_required"
    problem_slug = "authentication-required"
    title = _("Authentication required for idempotent requests")


class StorageUnavailable(IdempotencyError):
    """The key store could not be reached; the view did not run."""

    status_code = 503
    default_detail = _("The idempotency store is unavailable; the request was not processed.")
    default_code = "idempotency_storage_unavailable"
    problem_slug = "storage-unavailable"
    title = _("Idempotency store unavailable")
