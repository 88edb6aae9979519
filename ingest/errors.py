"""The HTTP error tree: each exception knows its status and machine-readable code.

Handlers raise these (and let the errors of the domain packages become them, see
``ingest.http.error_mapping``); ``json_errors`` in ``ingest.http.app`` turns them into
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = code or self.code

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.error_code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class ExpectationFailed(ApiError):
    status = 417
    code = "expectation_failed"


class HeadersTooLarge(ApiError):
    status = 431
    code = "request_header_fields_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    """The body parsed but a field is missing, of the wrong type or out of range."""

    status = 422
    code = "validation_failed"


class RetryLater(ApiError):
    """The request may succeed later: the answer carries ``Retry-After``."""

    def __init__(self, message: str, code: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, code)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class TooManyRequests(RetryLater):
    """The client is refused for a while (a guessing device or IP)."""

    status = 429
    code = "too_many_requests"


class Unavailable(RetryLater):
    """A backing service is down or the server is saturated: the client may retry later."""

    status = 503
    code = "unavailable"
