"""Wakes log readers (relay, projections) after appends commit, without slowing commits.

A NOTIFY inside the appending transaction would serialize commits (PostgreSQL holds a
database-wide lock from a notifying commit until it is flushed), so appenders only signal
this notifier after their commit; it sends one payload-less NOTIFY at a time, at most one per
NOTIFY_GAP, coalescing the signals that arrive meanwhile. Readers in the same process are
woken at once instead, and ignore that NOTIFY when it comes back. Readers re-read from their
checkpoint, and poll as a fallback.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from pipelines.database import connect
from pipelines.settings import Settings

log = logging.getLogger("banyan.notifier")
NOTIFY_GAP = 0.005  # seconds at least between two NOTIFYs: a busy service's appends share one


def events_channel(settings: Settings) -> str:
    return f"{settings.database_schema}.events"


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._local: list[Callable[[], None]] = []
        self.server_pid: int | None = None  # of the connection that sends the NOTIFY

    def signal(self) -> None:
        self._pending.set()
        for wake in self._local:
            wake()

    def wakes(self, wake: Callable[[], None]) -> None:
        """Call `wake` on every signal: a log reader of this process."""
        self._local.append(wake)

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
                    if conn is None or conn.is_closed():
                        conn = await connect(self.settings)
                        self.server_pid = conn.get_server_pid()
                    await conn.execute("SELECT pg_notify($1, '')", channel)
                    await asyncio.sleep(NOTIFY_GAP)
                except Exception as exc:  # whatever it is, readers still poll
                    log.warning("cannot notify log readers: %s", exc)
                    conn = None
                    await asyncio.sleep(self.settings.relay_poll_interval)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close())


class Wakeup:
    """When a log reader should read again: an append of its own process committed (known at
    once), or a NOTIFY came from another process's appends."""

    def __init__(self, settings: Settings, notifier: Notifier | None) -> None:
        self.settings = settings
        self.notifier = notifier
        self.event = asyncio.Event()
        if notifier is not None:
            notifier.wakes(self.event.set)

    async def listen(self, conn: asyncpg.Connection) -> None:
        await conn.add_listener(events_channel(self.settings), self._notified)

    def _notified(self, _conn: object, pid: int, _channel: str, _payload: str) -> None:
        if self.notifier is None or pid != self.notifier.server_pid:
            self.event.set()

    def clear(self) -> None:
        self.event.clear()

    async def wait(self) -> None:
        """Until woken or the poll interval passes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), self.settings.relay_poll_interval)
