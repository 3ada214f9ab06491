"""Wakes log readers (relay, projections) after appends commit, without slowing commits.

A NOTIFY inside the appending transaction would serialize commits (PostgreSQL holds a
database-wide lock from a notifying commit until it is flushed), so appenders only signal
this notifier after their commit; it sends one payload-less NOTIFY at a time, coalescing the
signals that arrive meanwhile. Readers re-read from their checkpoint, and poll as a fallback.
"""

import asyncio
import contextlib
import logging

import asyncpg

from pipelines.database import connect
from pipelines.retry import INFRASTRUCTURE_ERRORS
from pipelines.settings import Settings

log = logging.getLogger("banyan.notifier")


def events_channel(settings: Settings) -> str:
    return f"{settings.database_schema}.events"


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def signal(self) -> None:
        self._pending.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="banyan notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        channel = events_channel(self.settings)
        conn: asyncpg.Connection | None = None
        try:
            while True:
                await self._pending.wait()
                self._pending.clear()
                try:
                    conn = (
                        conn
                        if conn is not None and not conn.is_closed()
                        else await connect(self.settings)
                    )
                    await conn.execute("SELECT pg_notify($1, '')", channel)
                except INFRASTRUCTURE_ERRORS as exc:  # readers still poll
                    log.warning("cannot notify log readers: %s", exc)
                    conn = None
                    await asyncio.sleep(self.settings.relay_poll_interval)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close())
