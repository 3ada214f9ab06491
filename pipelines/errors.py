"""Errors a handler, policy or the platform raises; each maps to a code and an HTTP status."""

from typing import Any


class PlatformError(Exception):
    code = "INTERNAL_ERROR"
    status = 500
    retryable = False

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationError(PlatformError):
    code, status = "VALIDATION_ERROR", 400


class Unauthorized(PlatformError):
    code, status = "INVALID_TOKEN", 401


class NoAuthHeader(Unauthorized):
    code = "NO_AUTH_HEADER"


class TokenExpired(Unauthorized):
    code = "TOKEN_EXPIRED"


class InvalidCredentials(Unauthorized):
    code = "INVALID_CREDENTIALS"


class RateLimited(PlatformError):
    code, status = "RATE_LIMIT_EXCEEDED", 429


class Forbidden(PlatformError):
    code, status = "INSUFFICIENT_PERMISSIONS", 403


class PolicyViolation(PlatformError):
    code, status = "POLICY_VIOLATION", 403


class NotFound(PlatformError):
    code, status = "NOT_FOUND", 404


class Conflict(PlatformError):
    code, status = "CONFLICT", 409


class ConcurrencyError(Conflict):
    """Another writer appended to the aggregate first."""

    def __init__(self, aggregate: str, expected: int, actual: int) -> None:
        super().__init__(
            f"Expected version {expected}, but actual version is {actual}",
            {"aggregate": aggregate, "expectedVersion": expected, "actualVersion": actual},
        )
        self.expected, self.actual = expected, actual


class IdempotencyKeyReused(PlatformError):
    """The caller already sent this operation with this idempotency key and another body."""

    code, status = "IDEMPOTENCY_KEY_REUSED", 422


class Timeout(PlatformError):
    code, status = "TIMEOUT", 504


class ServiceUnavailable(PlatformError):
    code, status = "SERVICE_UNAVAILABLE", 503


class HandlerFailed(PlatformError):
    """A handler kept raising after every retry; the message went to its dead-letter queue."""

    code, status = "HANDLER_FAILED", 500


_BY_CODE: dict[str, type[PlatformError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        Unauthorized,
        NoAuthHeader,
        TokenExpired,
        InvalidCredentials,
        RateLimited,
        Forbidden,
        PolicyViolation,
        NotFound,
        Conflict,
        IdempotencyKeyReused,
        Timeout,
        ServiceUnavailable,
        HandlerFailed,
    )
}


def error_from_body(body: dict[str, Any]) -> PlatformError:
    """Rebuild the error a service replied with, so callers can `except` it by type."""
    err = body.get("error", {})
    cls = _BY_CODE.get(err.get("code", ""), PlatformError)
    exc = cls(err.get("message", "unknown error"), err.get("details"))
    exc.code = err.get("code", exc.code)
    return exc


def known_code(code: str) -> str:
    """`code` if the platform knows it, else `other`: a metric label from a closed set."""
    return code if code in _BY_CODE else "other"


def status_for(code: str) -> int:
    """The HTTP status of an error code (500 for codes the platform does not know)."""
    cls = _BY_CODE.get(code)
    return cls.status if cls is not None else 500
