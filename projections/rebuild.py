"""Rebuild a projection into a fresh generation of its tables while the live one serves.

The rebuild replays the whole log in batches, checkpointing each batch in
`projection_rebuilds` (so an interrupted rebuild resumes), reading each batch (on a pooled
connection) while it folds the one before, folding a document projection's batch while it
writes the one before, and creating a document projection's indexes once every document is
written. Then it swaps: under the live
projection's row lock it applies the last few events, points the view at the new tables and
moves the checkpoint, in one transaction. Queries never see a half-built read model.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable

import asyncpg

from pipelines.database import Pool, connect
from pipelines.eventstore import EventStore, RecordedEvent
from pipelines.settings import Settings
from projections import state
from projections.documents import Documents
from projections.fresh_table import FreshTable
from projections.progress import Progress
from projections.projection import Projection, Reset


class Rebuild:
    def __init__(
        self,
        projection: Projection,
        settings: Settings,
        pool: Pool,
        progress: Progress,
        reset_cache: Reset | None = None,
    ) -> None:
        self.projection = projection
        self.settings = settings
        self.store = EventStore(pool)
        self.progress = progress
        self.reset_cache = reset_cache
        self.batch = settings.rebuild_batch_size
        self.skipped: frozenset[int] = frozenset()  # events skipped by hand: skipped again
        self.fresh = FreshTable()  # only this rebuild writes the new generation's table

    async def run(self) -> int:
        """Rebuild and swap; returns the position the new generation starts live at."""
        conn = await connect(self.settings)
        try:
            # A crash loses the last batches and their checkpoints together: the rebuild
            # resumes from what is durable. Its commits need not wait for the disk.
            await conn.execute("SET synchronous_commit = off")
            generation, position, target = await self._resume_or_start(conn)
            position = await self._replay(conn, generation, position, target)
            final = await self._swap(conn, generation, position)
        finally:
            await conn.close()
        if self.reset_cache is not None:
            await self.reset_cache(self.projection.name)
        return final

    async def _resume_or_start(self, conn: asyncpg.Connection) -> tuple[int, int, int]:
        live = await state.ensure(conn, self.projection)
        self.skipped = frozenset(live.skipped)
        row = await conn.fetchrow(
            "SELECT generation, position, target FROM projection_rebuilds WHERE name = $1",
            self.projection.name,
        )
        if row is not None:
            self.progress.finish(f"resuming the rebuild of {self.projection.name}")
            return row["generation"], row["position"], row["target"]
        generation = live.generation + 1
        target = await self.store.head_position()
        async with conn.transaction():
            await conn.execute(f'DROP TABLE IF EXISTS "{self.projection.table(generation)}"')
            for statement in self.projection.table_ddl(generation):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO projection_rebuilds (name, generation, target) VALUES ($1, $2, $3)",
                self.projection.name,
                generation,
                target,
            )
        return generation, 0, target

    async def _replay(
        self, conn: asyncpg.Connection, generation: int, position: int, target: int
    ) -> int:
        """Apply batches until the whole log as of now is in the new generation.

        Each batch is read while the one before is folded, and folded while the one before
        that is written (the batch's documents and its checkpoint, in one transaction).
        """
        reading = asyncio.ensure_future(self._read(position))
        writing: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        writing.set_result(None)  # the batch being written: how many events it commits
        try:
            while True:
                events, covered = await reading
                if covered == position:
                    break
                reading = asyncio.ensure_future(self._read(covered))  # while this one applies
                write = await self._fold(conn, generation, events, writing)
                self._report(await writing, position, target)
                writing = asyncio.ensure_future(self._commit(conn, write, len(events), covered))
                position = covered
            self._report(await writing, position, target)
        finally:
            reading.cancel()
            writing.cancel()  # a batch cut short is rolled back, its checkpoint with it
            await asyncio.gather(writing, return_exceptions=True)
        for statement in self.projection.index_ddl(generation):
            await conn.execute(statement)
        return position

    async def _fold(
        self,
        conn: asyncpg.Connection,
        generation: int,
        events: list[RecordedEvent],
        writing: "asyncio.Future[int | None]",
    ) -> Callable[[], Awaitable[object]]:
        """What writes a batch. A document projection's handlers run now, while the batch
        before is written (a document they read back is read once it is written); a SQL
        projection's write as they run, so they run inside the batch's own transaction."""
        if self.projection.schema is not None:
            return functools.partial(self.projection.apply, conn, generation, events)
        table = self.projection.table(generation)
        documents = Documents(conn, table, self.fresh, after=writing)
        await self.projection.handle(documents, events)
        return documents.flush

    async def _commit(
        self,
        conn: asyncpg.Connection,
        write: Callable[[], Awaitable[object]],
        count: int,
        covered: int,
    ) -> int:
        async with conn.transaction():
            await write()
            await conn.execute(
                "UPDATE projection_rebuilds SET position = $2, updated_at = now() WHERE name = $1",
                self.projection.name,
                covered,
            )
        return count

    def _report(self, applied: int | None, position: int, target: int) -> None:
        if applied is not None:
            self.progress.update(applied, position, max(target, position))

    async def _read(
        self, position: int, conn: asyncpg.Connection | None = None
    ) -> tuple[list[RecordedEvent], int]:
        """The events of one batch after `position` (less those skipped by hand), and the
        position the batch covers."""
        events, covered = await self.store.read_page(
            position, self.batch, self.projection.event_types, conn
        )
        if self.skipped:
            events = [event for event in events if event.position not in self.skipped]
        return events, covered

    async def _swap(self, conn: asyncpg.Connection, generation: int, position: int) -> int:
        name = self.projection.name
        async with conn.transaction():
            live = await state.load(conn, name, lock=True)  # live checkpoints wait from here
            while position < live.position:
                events, position = await self._read(position, conn)
                await self.projection.apply(conn, generation, events, self.fresh)
            await state.point_view(conn, self.projection, generation)
            await conn.execute(
                "UPDATE projection_positions SET generation = $2, position = $3, "
                "state = 'running', error = NULL, error_position = NULL, updated_at = now() "
                "WHERE name = $1",
                name,
                generation,
                position,
            )
            await conn.execute("DELETE FROM projection_rebuilds WHERE name = $1", name)
        await conn.execute(f'DROP TABLE IF EXISTS "{self.projection.table(live.generation)}"')
        self.progress.finish(f"{name}: rebuilt, live at position {position:,}")
        return position
