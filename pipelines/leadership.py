"""Keeping a single-leader loop (the relay, a projection runner) alive across lost connections."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pipelines.retry import INFRASTRUCTURE_ERRORS

log = logging.getLogger("banyan.leadership")


async def keep_leading(
    what: str, lead: Callable[[], Awaitable[None]], lost: asyncio.Event, pause: float
) -> None:
    """Run `lead` until cancelled; after a lost connection clear `lost` and start again."""
    while True:
        try:
            await lead()
        except INFRASTRUCTURE_ERRORS as exc:
            lost.clear()
            log.warning("%s lost its connection (%s): stepped down; retrying", what, exc)
            await asyncio.sleep(pause)
