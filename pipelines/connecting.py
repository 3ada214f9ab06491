"""Connecting at start: RabbitMQ and PostgreSQL may come up after us, so keep trying, and say so."""

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiormq

from pipelines.retry import INFRASTRUCTURE_ERRORS, backoff_delay
from pipelines.settings import Settings

T = TypeVar("T")
CONNECT_MAX_DELAY = 30.0
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    *INFRASTRUCTURE_ERRORS,
    aiormq.exceptions.AMQPConnectionError,
)


async def until_connected(
    what: str,
    url: str,
    connect: Callable[[], Awaitable[T]],
    settings: Settings,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    errors: tuple[type[BaseException], ...] = CONNECT_ERRORS,
) -> T:
    """`connect()`, tried again with backoff while it fails with one of `errors`."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect()
        except errors as exc:
            delay = min(CONNECT_MAX_DELAY, backoff_delay(settings, attempt))
            log.warning(
                "%s unreachable at %s (%s); retrying in %.1fs (attempt %d)",
                what, safe_url(url), exc, delay, attempt,
            )  # fmt: skip
            await asyncio.sleep(delay)


_PASSWORD = re.compile(r"^([^:/]+://[^:@/]*:)[^@/]*@")


def safe_url(url: str) -> str:
    """`url` without its password (it may name several hosts, which `yarl` does not read)."""
    return _PASSWORD.sub(r"\1***@", url, count=1)
