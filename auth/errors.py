"""Refusals particular to signing in (the SDK's errors cover the rest)."""

from pipelines import errors


class InvalidCredentials(errors.InvalidCredentials):
    """The same answer whether the email is unknown or the password wrong."""

    def __init__(self, message: str = "invalid email or password") -> None:
        super().__init__(message)


class AccountDisabled(errors.Unauthorized):
    """Said only to whoever gave the right password (or holds a session of the account)."""

    def __init__(self) -> None:
        super().__init__("this account is disabled; an administrator may enable it again")


class SignInRequired(errors.NoAuthHeader):
    pass


class RefreshTokenExpired(errors.TokenExpired):
    pass


class TooManyAttempts(errors.RateLimited):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed sign-in attempts; try again later", {"retryAfter": retry_after}
        )
