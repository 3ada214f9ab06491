"""What a new password must be: at least 10 characters, not one of the 30,000 most common
passwords (zxcvbn's list, from real leaks), and not containing the user's email."""

from zxcvbn.frequency_lists import FREQUENCY_LISTS

from pipelines.errors import ValidationError

MIN_LENGTH = 10
COMMON = frozenset(FREQUENCY_LISTS["passwords"])


def not_common(password: str) -> str:
    """A pydantic validator of a new password."""
    if password.lower() in COMMON:
        raise ValueError(f"is one of the {len(COMMON):,} most common passwords; choose another")
    return password


def check_not_email(password: str, email: str) -> None:
    """Refuse a password that contains the user's email or is the part before its @."""
    lowered, email = password.lower(), email.lower()
    if email in lowered or lowered == email.partition("@")[0]:
        raise ValidationError(
            "the password must not contain your email",
            [{"field": "password", "message": "contains the email"}],
        )
