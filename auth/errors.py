"""Refusals particular to signing in (the SDK's errors cover the rest)."""

from pipelines.errors import PlatformError, Unauthorized


class InvalidCredentials(Unauthorized):
    """The same answer whether the email is unknown or the password wrong."""

    code = "INVALID_CREDENTIALS"

    def __init__(self, message: str = "invalid email or password") -> None:
        super().__init__(message)


class SignInRequired(Unauthorized):
    code = "NO_AUTH_HEADER"


class RefreshTokenExpired(Unauthorized):
    code = "TOKEN_EXPIRED"


class TooManyAttempts(PlatformError):
    code, status = "RATE_LIMIT_EXCEEDED", 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed sign-in attempts; try again later", {"retryAfter": retry_after}
        )
