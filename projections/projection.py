"""Declaring a read model: a name, the events it folds, and where it keeps its rows.

    order_summary = Projection("order_summary", indexes={"customer": "customerId"})

    @order_summary.on(OrderPlaced)
    async def placed(event: OrderPlaced, docs: Documents, meta: RecordedEvent) -> None:
        docs.put(event.order_id, {...})

A document projection keeps one jsonb document per id. A SQL projection (`schema=`) owns
tables created from DDL with a `{table}` placeholder, and its handlers get a `SqlTable`.
Each rebuild writes a new generation of the tables; the view named after the projection
always points at the live one.
"""

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg

from pipelines.context import Context
from pipelines.contracts import Event, check_contract
from pipelines.database import Pool
from pipelines.eventstore import RecordedEvent
from pipelines.memory_log import MemoryEventStore
from pipelines.notifier import Notifier
from pipelines.settings import Settings
from projections.documents import DocumentReader, Documents, field_sql
from projections.fresh_table import FreshTable

NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
YIELD_EVERY = 64  # events a fold handles between letting other tasks run
E = TypeVar("E", bound=Event)
Apply = Callable[[Any, Any, RecordedEvent], Awaitable[None]]
Invalidate = Callable[[str, Sequence[RecordedEvent]], Awaitable[None]]  # QueryCache.invalidate
Reset = Callable[[str], Awaitable[None]]  # QueryCache.reset


class Writer(Protocol):
    """What a projection's handlers write to: `Documents`, `SqlTable`, or the test kit's."""

    async def flush(self) -> None: ...


class ProjectionError(Exception):
    """A projection handler failed on one event; the projection stops there."""

    def __init__(self, position: int, event_type: str, cause: BaseException) -> None:
        super().__init__(f"{event_type} at position {position}: {cause!r}")
        self.position, self.cause = position, cause


class SqlTable:
    """What a SQL projection's handlers write to: its connection and its table name."""

    def __init__(self, conn: asyncpg.Connection, table: str) -> None:
        self.conn = conn
        self.table = table

    async def execute(self, sql: str, *args: Any) -> str:
        return str(await self.conn.execute(sql.format(table=f'"{self.table}"'), *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.conn.fetchrow(sql.format(table=f'"{self.table}"'), *args)

    async def flush(self) -> None:
        return None


class Projection:
    def __init__(
        self,
        name: str,
        *,
        indexes: dict[str, str] | None = None,
        schema: str | None = None,
        batch_size: int = 1000,
    ) -> None:
        if not NAME.match(name):
            raise ValueError(f"projection name {name!r} must match {NAME.pattern}")
        for field in (indexes or {}).values():
            field_sql(field)
        self.name = name
        self.indexes = dict(indexes or {})
        self.schema = schema
        self.batch_size = batch_size
        self.handlers: dict[str, tuple[type[Event], Apply]] = {}

    def on(self, event: type[E]) -> Callable[[Apply], Apply]:
        check_contract(event)

        def register(fn: Apply) -> Apply:
            self.handlers[event.message_type()] = (event, fn)
            return fn

        return register

    @property
    def event_types(self) -> list[str]:
        return list(self.handlers)

    @property
    def event_contracts(self) -> list[type[Event]]:
        return [contract for contract, _ in self.handlers.values()]

    def table(self, generation: int) -> str:
        return f"{self.name}__g{generation}"

    def ddl(self, generation: int) -> list[str]:
        """Statements that create one generation of this projection's tables."""
        return self.table_ddl(generation) + self.index_ddl(generation)

    def table_ddl(self, generation: int) -> list[str]:
        """The tables of one generation, without the indexes a document projection declares."""
        table = self.table(generation)
        if self.schema is not None:
            return [self.schema.format(table=f'"{table}"')]
        return [
            f'CREATE TABLE IF NOT EXISTS "{table}" (id text PRIMARY KEY, doc jsonb NOT NULL, '
            "updated_at timestamptz NOT NULL DEFAULT now())"
        ]

    def index_ddl(self, generation: int) -> list[str]:
        """A document projection's declared indexes on one generation: a rebuild creates them
        once it has written every document (one sort each, not an insert per document)."""
        if self.schema is not None:
            return []
        table = self.table(generation)
        return [
            f'CREATE INDEX IF NOT EXISTS "{table}_{index}" ON "{table}" ({field_sql(field)})'
            for index, field in self.indexes.items()
        ]

    def writer(
        self, conn: asyncpg.Connection, generation: int, fresh: FreshTable | None = None
    ) -> Documents | SqlTable:
        table = self.table(generation)
        return SqlTable(conn, table) if self.schema is not None else Documents(conn, table, fresh)

    async def apply(
        self,
        conn: asyncpg.Connection,
        generation: int,
        events: Sequence[RecordedEvent],
        fresh: FreshTable | None = None,
    ) -> list[RecordedEvent]:
        """Fold `events` into the given generation, inside the caller's transaction; returns
        them as the handlers saw them (events of older versions upcast). `fresh`: a rebuild's
        table, which only it writes."""
        return await self.fold(self.writer(conn, generation, fresh), events)

    async def fold(self, writer: Writer, events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
        """Hand each event this projection handles to its handler, with `writer`; then flush.
        Returns the events as the handlers saw them."""
        applied = await self.handle(writer, events)
        await writer.flush()
        return applied

    async def handle(self, writer: Writer, events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
        """Hand each event this projection handles to its handler, with `writer` (not flushed
        yet); returns the events as the handlers saw them.

        Every YIELD_EVERY events it lets other tasks run: a rebuild writes its previous batch
        on its connection meanwhile.
        """
        applied = []
        for count, recorded in enumerate(events, 1):
            entry = self.handlers.get(recorded.event_type)
            if entry is not None:
                event, handler = entry
                try:
                    recorded = recorded.read_as(event)
                    # the model's validator itself: model_validate adds a sixth to the cost
                    validated = event.__pydantic_validator__.validate_python(recorded.data)
                    await handler(validated, writer, recorded)
                except Exception as exc:
                    raise ProjectionError(recorded.position, recorded.event_type, exc) from exc
            applied.append(recorded)
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return applied

    def runner(
        self,
        settings: Settings,
        pool: Pool,
        invalidate: Invalidate | None,
        notifier: Notifier | None = None,
    ) -> Any:
        """What keeps this projection up to date inside a service process."""
        from projections.runner import ProjectionRunner

        return ProjectionRunner(self, settings, pool, invalidate, notifier)

    def documents(self, ctx: Context) -> DocumentReader:
        """Read this projection's live documents from a query handler."""
        if isinstance(ctx.store, MemoryEventStore):  # a unit test: the test kit's documents
            reader: DocumentReader = ctx.store.read_models[self.name]
            return reader
        return DocumentReader(ctx.read_pool, self.name)

    def in_memory(self) -> DocumentReader:
        """This projection's documents kept in memory, for the test kit (`pipelines.testing`)."""
        from projections.testing import MemoryDocuments

        return MemoryDocuments(self)
