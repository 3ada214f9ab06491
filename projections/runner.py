"""Keeps one projection up to date: catch up from its checkpoint, then follow the log.

Each batch of events is applied and the checkpoint moved atomically (a document projection's
in one statement, a SQL projection's in one transaction), so a crash never applies an event
twice nor skips one. One runner per projection applies at a time
(an advisory lock); others wait. A handler that raises stops the projection at that event,
visible in `banyan projections status`, until the code is fixed (restart) or the event is
skipped (`banyan projections skip NAME`).
"""

import asyncio
import logging

import asyncpg

from pipelines import telemetry
from pipelines.database import Pool, connect
from pipelines.eventstore import EventStore, RecordedEvent
from pipelines.leadership import keep_leading
from pipelines.notifier import Notifier, Wakeup
from pipelines.settings import Settings
from projections import state
from projections.documents import Documents
from projections.projection import Invalidate, Projection, ProjectionError

log = logging.getLogger("banyan.projections")


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        settings: Settings,
        pool: Pool,
        invalidate: Invalidate | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.projection = projection
        self.settings = settings
        self.store = EventStore(pool)
        self.invalidate = invalidate
        self.position = 0
        self.generation = 1
        self.failed = False
        self._wake = Wakeup(settings, notifier)
        self.is_leader = asyncio.Event()

    async def run(self) -> None:
        await keep_leading(
            f"projection {self.projection.name}",
            self._lead,
            self.is_leader,
            self.settings.relay_poll_interval,
        )

    async def _lead(self) -> None:
        conn = await connect(self.settings)
        try:
            key = f"{self.settings.database_schema}.projection.{self.projection.name}"
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
            await self._wake.listen(conn)
            current = await state.ensure(conn, self.projection)
            self.position, self.generation = current.position, current.generation
            self.failed = False  # a restart retries the event it failed on: maybe it is fixed
            self.is_leader.set()
            log.info("projection %s running from position %d", self.projection.name, self.position)
            while True:
                self._wake.clear()  # an append committing from here on wakes the wait below
                if not await self.step(conn):
                    await self._wake.wait()
        finally:
            self.is_leader.clear()
            conn.terminate()  # never waits: a graceful close can hang a cancelled task

    async def step(self, conn: asyncpg.Connection) -> bool:
        """Apply the next batch; True if more may be ready right away.

        A batch shorter than the limit covered the log up to its readable bound: whatever
        commits later comes with a NOTIFY, so there is no need to read again until then.
        """
        if self.failed:
            current = await state.load(conn, self.projection.name)
            if current.state == "failed":
                return False
            self.failed = False
            self.position = current.position
        events, covered = await self.store.read_page(
            self.position, self.projection.batch_size, self.projection.event_types, conn
        )
        if covered == self.position:
            return False
        try:
            applied = await self._commit(conn, events, covered)
        except ProjectionError as exc:
            await self._stop_at(conn, events, exc)
            return False
        if applied is None:
            return True
        await self._published(conn, applied)
        return len(events) == self.projection.batch_size

    async def _published(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        """After a commit: invalidate cached answers first, then wake read-your-writes waiters.

        The other way round, a waiter would cache its fresh answer under the counters about
        to be bumped, and the next query would miss.
        """
        if events and self.invalidate is not None:
            await self.invalidate(self.projection.name, events)
        await state.announce(conn, self.projection.name, self.position, self.settings)

    async def _commit(
        self, conn: asyncpg.Connection, events: list[RecordedEvent], covered: int
    ) -> list[RecordedEvent] | None:
        """Apply and checkpoint atomically: the events as applied (upcast), or None if a
        rebuild or a skip moved the checkpoint."""
        try:
            with telemetry.applying(self.projection.name, events):
                applied = await self._apply(conn, events, covered)
        except (Superseded, ProjectionError, asyncpg.UndefinedTableError):
            # Applied to a generation a swap has replaced (its table may be gone already):
            # no effect, and nothing to report; the next step reads the new checkpoint.
            if await self._follow_checkpoint(conn):
                return None
            raise
        self.position = covered
        return applied

    async def _apply(
        self, conn: asyncpg.Connection, events: list[RecordedEvent], covered: int
    ) -> list[RecordedEvent]:
        """Apply `events` and move the checkpoint to `covered`, all or nothing (Superseded if
        the checkpoint is not where this runner left it).

        A document projection's writes wait for the end of the batch: they and the checkpoint
        go in one statement (no BEGIN and COMMIT). A SQL projection's handlers write as they
        run, inside a transaction the checkpoint commits with.
        """
        name, expected = self.projection.name, (self.position, self.generation)
        writer = self.projection.writer(conn, self.generation)
        if isinstance(writer, Documents):
            applied = await self.projection.handle(writer, events)
            if not await writer.flush_if(state.advancing(name, expected, covered)):
                raise Superseded
            return applied
        async with conn.transaction():
            applied = await self.projection.fold(writer, events)
            if not await state.advance(conn, name, expected, covered):
                raise Superseded
        return applied

    async def _follow_checkpoint(self, conn: asyncpg.Connection) -> bool:
        """Take the stored checkpoint if it moved under this runner; False if it did not."""
        current = await state.load(conn, self.projection.name)
        if (current.position, current.generation) == (self.position, self.generation):
            return False
        self.position, self.generation = current.position, current.generation
        return True

    async def _stop_at(
        self, conn: asyncpg.Connection, events: list[RecordedEvent], exc: ProjectionError
    ) -> None:
        good = [e for e in events if e.position < exc.position]
        if good:
            applied = await self._commit(conn, good, good[-1].position)
            if applied is None:
                return  # superseded: the next step meets the event again, if at all
            await self._published(conn, applied)
        await state.fail(conn, self.projection.name, exc.position, repr(exc.cause))
        self.failed = True
        failed = next(e for e in events if e.position == exc.position)
        log.error(
            "projection %s stopped: %s",
            self.projection.name,
            exc,
            exc_info=exc.cause,
            extra={"projection": self.projection.name, "messageId": str(failed.event_id),
                   "messageType": failed.event_type, "position": failed.position,
                   "correlationId": failed.correlation_id, "retryCount": 0},
        )  # fmt: skip


class Superseded(Exception):
    """The checkpoint moved under a runner's batch: roll the batch back."""
