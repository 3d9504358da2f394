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
    """A keyed request names no principal, and the view does not share keys among anonymous callers."""

    status_code = 403
    default_detail = _(
        "Idempotency-Key requests to this endpoint must come from an identified caller. "
        "Authenticate the request. (For the API's developers: name the caller with a principal "
        "function, IDEMPOTENCY_PRINCIPAL or principal=..., for example from request.auth; or, "
        "only where every caller may see every other caller's responses, opt the view in with "
        "anonymous='shared'.)"
    )
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


class TransactionAborted(IdempotencyError):
    """The view caught a database error that aborted its transaction; nothing was saved."""

    status_code = 500
    default_detail = _(
        "The request failed: a database error inside it aborted its transaction, so nothing "
        "was saved and the Idempotency-Key is still free. Retry with the same key."
    )
    default_code = "idempotency_transaction_aborted"
    problem_slug = "transaction-aborted"
    title = _("The request's transaction was aborted")


class PayloadTooLarge(IdempotencyError):
    """The body is over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, so it cannot be read to fingerprint it."""

    status_code = 413
    default_detail = _(
        "The request body is too large to be checked against its Idempotency-Key. (For the "
        "API's developers: the body is over DATA_UPLOAD_MAX_MEMORY_SIZE; raise that setting, or "
        "give this view its own fingerprint function, or fingerprint=False.)"
    )
    default_code = "idempotency_payload_too_large"
    problem_slug = "payload-too-large"
    title = _("Request body too large to fingerprint")


class TooManyFields(IdempotencyError):
    """The body or query string has more fields than Django's limits allow."""

    default_detail = _(
        "The request has too many fields. (For the API's developers: the query string or body "
        "has more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS, or more files than "
        "DATA_UPLOAD_MAX_NUMBER_FILES, allows.)"
    )
    default_code = "idempotency_too_many_fields"
    problem_slug = "too-many-fields"
    title = _("Too many fields in the request")


class MalformedBody(IdempotencyError):
    """The body cannot be parsed as its ``Content-Type`` says (a multipart body without a boundary)."""

    default_detail = _("The request body could not be parsed as its Content-Type says.")
    default_code = "idempotency_malformed_body"
    problem_slug = "malformed-body"
    title = _("Malformed request body")
