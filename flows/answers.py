"""What a step's reply means: an answer to record (done or refused), or no answer yet."""

from collections.abc import Callable
from typing import Any, Literal

from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from pipelines.errors import PlatformError, ServiceUnavailable, Timeout
from pipelines.rpc import Response

# The receiver may not have handled the message (or may handle it later): send it again.
RETRY_CODES = frozenset(
    {"TIMEOUT", "SERVICE_UNAVAILABLE", "HANDLER_FAILED", "TOKEN_EXPIRED", "RATE_LIMIT_EXCEEDED"}
)
# No reply: nothing consumes the queue, the reply did not come in time, or the broker was lost.
NO_REPLY: tuple[type[BaseException], ...] = (
    Timeout, ServiceUnavailable, OSError, AMQPError, ChannelInvalidStateError,
)  # fmt: skip

Refusal = Callable[[Any], str | None]  # why an answer is a refusal, or None


class NoAnswer(Exception):
    """Nothing usable came back: the step stays pending and is sent again later."""


def worth_retrying(error: PlatformError) -> bool:
    if error.code in RETRY_CODES:
        return True
    # A version clash every time the receiver retried: it lost races, it did not refuse.
    details = error.details if isinstance(error.details, dict) else {}
    return error.code == "CONFLICT" and "expectedVersion" in details


def is_refusal(response: Response) -> bool:
    """An error reply that is the receiver's answer, not a failure to get one."""
    return not response.ok and not worth_retrying(response.error())


def judge(
    response: Response, read: Callable[[Any], Any], refusal: Refusal | None
) -> tuple[Literal["done", "refused"], Any, str | None]:
    """(status, result, reason) of a reply; raises NoAnswer when it is worth asking again."""
    if not response.ok:
        error = response.error()
        if worth_retrying(error):
            raise NoAnswer(f"{error.code}: {error.message}")
        return "refused", response.json(), error.message
    result = response.json()
    reason = refusal(read(result)) if refusal is not None else None
    return ("refused" if reason else "done"), result, reason
