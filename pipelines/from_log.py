"""Events published again as the log holds them: what `banyan dlq replay` sends in place of an
event its queue refused as forged. So a genuine event that a relay of an older version published
unsigned, or signed with a key changed since, is delivered after all; an event the log does not
hold, or holds as another type than the queue is for, is not."""

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aio_pika
import asyncpg

from pipelines import headers as h
from pipelines.database import connect
from pipelines.event_signing import EventSignatures
from pipelines.relay import READ_BATCH, event_message
from pipelines.settings import Settings

POSITION_OF = "SELECT position FROM events WHERE event_id = $1"


class LogCopies:
    """Reads the log (connecting at the first event asked for) and signs what it reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signatures = EventSignatures.of(settings)
        self._conn: asyncpg.Connection | None = None

    async def of(self, headers: Mapping[str, Any], queue: str) -> aio_pika.Message | None:
        """The log's own copy of the event `headers` name, signed, if it belongs in `queue`."""
        try:
            event_id = uuid.UUID(str(headers.get(h.EVENT_ID)))
        except ValueError:
            return None
        conn = self._conn = self._conn or await connect(self.settings)
        position = await conn.fetchval(POSITION_OF, event_id)
        rows = [] if position is None else await conn.fetch(READ_BATCH, position - 1, 1)
        if not rows or rows[0]["event_id"] != event_id:
            return None
        if not queue.endswith("." + rows[0]["event_type"].lower()):
            return None  # the queue of another event type: it was sent there to mislead
        return event_message(rows[0], self.signatures)[1]

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


@contextlib.asynccontextmanager
async def log_copies(settings: Settings) -> AsyncIterator[LogCopies]:
    copies = LogCopies(settings)
    try:
        yield copies
    finally:
        await copies.close()
