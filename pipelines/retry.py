"""Retry timing and which failures are worth retrying."""

import random

import asyncpg
from aiormq.exceptions import ChannelInvalidStateError

from pipelines.settings import Settings

# The database or broker went away: the message is not at fault, so it is never dead-lettered.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes aiormq's AMQPConnectionError
    ChannelInvalidStateError,  # a publish or ack on a channel whose connection is gone
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    # a connection a server restart broke mid-statement (its rollback finds it still busy)
    asyncpg.InternalClientError,
)


def backoff_delay(settings: Settings, attempt: int) -> float:
    """Exponential backoff with jitter: attempt 1 waits about the initial delay."""
    base = min(settings.retry_max_delay, settings.retry_initial_delay * 2 ** (attempt - 1))
    return float(base) * random.uniform(0.75, 1.25)
