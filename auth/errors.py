"""Refusals particular to signing in (the SDK's errors cover the rest)."""

from pipelines import errors


class InvalidCredentials(errors.InvalidCredentials):
    """The same answer whether the email is unknown or the password wrong."""

    def __init__(self, message: str = "invalid email or password") -> None:
        super().__init__(message)


class SignInRequired(errors.NoAuthHeader):
    pass


class RefreshTokenExpired(errors.TokenExpired):
    pass


class TooManyAttempts(errors.RateLimited):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed sign-in attempts; try again later", {"retryAfter": retry_after}
        )
