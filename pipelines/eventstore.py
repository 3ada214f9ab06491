"""The PostgreSQL event log: append with optimistic concurrency, read streams and the whole log."""

import asyncio
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Any, NamedTuple, TypeAlias, cast

import asyncpg

from pipelines.append_statements import (
    COMMAND_RECORDED_CONSTRAINT,
    append_statement,
    event_arguments,
)
from pipelines.contracts import Event
from pipelines.database import Pool, delete_in_batches, encode_json
from pipelines.errors import ConcurrencyError
from pipelines.notifier import Notifier
from pipelines.telemetry import appending
from pipelines.upcasting import upcast

EVENT_COLUMNS = (
    "position, event_id, aggregate_type, aggregate_id, version, event_type, data, metadata, "
    "occurred_at, correlation_id, causation_id, schema_version"
)
# SKIP LOCKED: instances sweeping at the same time take different rows instead of waiting
EXPIRE_COMMAND_RESULTS = (
    "DELETE FROM command_results WHERE command_id = ANY(ARRAY("
    "SELECT command_id FROM command_results WHERE created_at < now() - make_interval(secs => $1) "
    "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)
EXPIRE_PROCESSED_EVENTS = (
    "DELETE FROM processed_events WHERE (subscriber, event_id) IN ("
    "SELECT subscriber, event_id FROM processed_events "
    "WHERE processed_at < now() - make_interval(secs => $1) "
    "ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
)
# How long the oldest append still in flight has run: readers wait for it (see readable_bound).
OLDEST_APPEND = (
    "SELECT coalesce(extract(epoch FROM max(now() - a.xact_start)), 0)::float8 "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((l.classid::bigint << 32) | l.objid::bigint) - in_flight_namespace() "
    "BETWEEN 1 AND 1099511627775"
)
COMMAND_RESULT = (
    "SELECT result, position, fingerprint, result IS NULL AS withheld FROM command_results "
    "WHERE command_id = $1"
)
READ_LOG = "SELECT * FROM read_log_as_written($1, $2, $3::text[])"
# Below a readable bound once taken every position stays settled (the bound only rises), so
# a reader reads below it with a plain SELECT: no bound per page, and rows no function buffers.
READ_SETTLED = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position < $2 "
    "ORDER BY position LIMIT $3"
)
READ_SETTLED_OF_TYPES = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position < $2 "
    "AND event_type = ANY($4::text[]) ORDER BY position LIMIT $3"
)
EVENT_ID_CONSTRAINT = "events_event_id_key"
# One snapshot per shape, so that two releases running side by side (a rolling deploy) each
# start from their own; a shape no release has written for a day is gone with its class.
SAVE_SNAPSHOT = (
    "WITH stale AS (DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 "
    "AND shape <> $5 AND created_at < now() - interval '1 day') "
    "INSERT INTO snapshots (aggregate_type, aggregate_id, version, state, shape) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (aggregate_type, aggregate_id, shape) DO UPDATE "
    "SET version = excluded.version, state = excluded.state, created_at = now() "
    "WHERE snapshots.version < excluded.version"
)
Runner: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(slots=True)
class NewEvent:
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    data: str  # JSON text
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    schema_version: int = 1  # of the event's class (see pipelines.upcasting)


class RecordedEvent(NamedTuple):
    """An event as the log holds it. Immutable; a named tuple because readers build one per
    event read, which costs a sixth of what a frozen dataclass does."""

    position: int
    event_id: uuid.UUID
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    occurred_at: datetime
    correlation_id: str | None
    causation_id: str | None
    schema_version: int = 1  # the version of the class that wrote it

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "RecordedEvent":
        """From a row of EVENT_COLUMNS."""
        return _recorded(row)

    @classmethod
    def from_log(cls, row: asyncpg.Record) -> "RecordedEvent":
        """From a row of `read_log_as_written`: the bound, then the event."""
        return cls._make(islice(row, 1, None))

    def read_as(self, event: type[Event]) -> "RecordedEvent":
        """This event with the data `event` reads: upcast when it was written by an older
        version of the class (no work otherwise)."""
        current = event.__version__
        if self.schema_version >= current:
            return self
        data = upcast(event, self.data, self.schema_version)
        return _recorded((*self[:6], data, *self[7:11], current))


# From a row of EVENT_COLUMNS (or its fields): a quarter faster than `_make`, which checks the
# length in Python.
_recorded = cast(Callable[[Iterable[Any]], RecordedEvent], partial(tuple.__new__, RecordedEvent))
Page: TypeAlias = tuple[list[RecordedEvent], int]  # events, and the position the reader covered
Fetch: TypeAlias = Callable[[int], Awaitable[list[asyncpg.Record]]]  # the page after a position


@dataclass(slots=True, frozen=True)
class CommandRecord:
    """What makes a command idempotent: its record's id (see `pipelines.idempotency`), the
    result to answer a duplicate with, and the fingerprint a duplicate's body must match."""

    command_id: str
    message_type: str
    result: str | None  # JSON text; None when it held secrets (never kept)
    fingerprint: bytes | None = None


class DuplicateCommand(Exception):
    """The command id was already handled; its first result stands."""


class DuplicateEvent(Exception):
    """An event with this id is in the log already: the append added nothing."""


@dataclass(slots=True, frozen=True)
class StoredResult:
    result: Any
    position: int | None
    fingerprint: bytes | None = None
    withheld: bool = False  # the result held secrets, so it was not kept


class EventStore:
    """The log, through a pool."""

    def __init__(self, pool: Pool, notifier: "Notifier | None" = None) -> None:
        self.pool = pool
        self.notifier = notifier
        self._settled_below = 0  # the highest readable bound a read took: settled below it

    def committed(self) -> None:
        """Call after a transaction that appended events commits: wakes the log readers."""
        if self.notifier is not None:
            self.notifier.signal()

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        command: CommandRecord | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> int | None:
        """Append atomically; returns the global position of the last event (None if none).

        Raises ConcurrencyError when another writer took one of the versions first, and
        DuplicateCommand when `command` was already recorded.
        """
        if not events and command is None:
            return None
        sql = append_statement(len(events), command is not None)
        args = _arguments(events, correlation_id, causation_id, command)
        try:
            with appending(sql, events) as appended:
                if conn is not None:  # the caller's transaction: it calls committed() after
                    return appended(await conn.fetchval(sql, *args))
                position = appended(await self.pool.fetchval(sql, *args))
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == COMMAND_RECORDED_CONSTRAINT and command is not None:
                raise DuplicateCommand(command.command_id) from exc
            if exc.constraint_name == EVENT_ID_CONSTRAINT:
                raise DuplicateEvent(exc.detail or "an event id is taken") from exc
            if exc.constraint_name != "events_aggregate_version":
                raise
            raise await self._concurrency_error(events) from exc
        if position is not None:
            self.committed()
        return position

    async def _concurrency_error(self, events: Sequence[NewEvent]) -> ConcurrencyError:
        first = min(events, key=lambda e: e.version)
        actual = await self.stream_version(first.aggregate_type, first.aggregate_id)
        return ConcurrencyError(
            f"{first.aggregate_type}/{first.aggregate_id}", first.version - 1, actual
        )

    async def stream_version(self, aggregate_type: str, aggregate_id: str) -> int:
        version = await self.pool.fetchval(
            "SELECT max(version) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
            aggregate_type,
            aggregate_id,
        )
        return int(version or 0)

    async def read_stream(
        self, aggregate_type: str, aggregate_id: str, after_version: int = 0
    ) -> list[RecordedEvent]:
        rows = await self.pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 "
            "AND version > $3 ORDER BY version",
            aggregate_type,
            aggregate_id,
            after_version,
        )
        return [RecordedEvent.from_row(r) for r in rows]

    async def readable_bound(self, conn: Runner | None = None) -> int:
        """Every position below this one is settled: committed, or rolled back for good."""
        return int(await (conn or self.pool).fetchval("SELECT readable_bound()"))

    async def oldest_append_seconds(self) -> float:
        """Seconds the oldest append still in flight has been running (0: none is)."""
        return float(await self.pool.fetchval(OLDEST_APPEND))

    async def read_all(
        self,
        after_position: int,
        limit: int = 1000,
        event_types: Sequence[str] | None = None,
        conn: Runner | None = None,
    ) -> list[RecordedEvent]:
        """Events after a position, in position order, never skipping one that commits later."""
        events, _ = await self.read_page(after_position, limit, event_types, conn)
        return events

    async def read_page(
        self,
        after_position: int,
        limit: int,
        event_types: Sequence[str] | None = None,
        conn: Runner | None = None,
    ) -> tuple[list[RecordedEvent], int]:
        """The next events (of the given types), and the position the reader has now covered.

        Only positions below a readable bound are read, in a statement that starts after the
        bound was taken, so every one of them is visible or gone for good. A bound stays good
        (the positions below it are settled forever), so a reader catching up takes one, in the
        same round trip as its page (`read_log_as_written`), only when it has read everything
        below the highest this store has seen. When fewer than `limit` events match, the reader
        has covered everything below a bound taken during this call.
        """
        types = list(event_types) if event_types is not None else None
        runner = conn or self.pool
        settled = self._settled_below
        if after_position + 1 >= settled:
            return await self._read_with_bound(runner, after_position, limit, types)
        events = list(map(_recorded, await _settled(runner, settled, limit, types)(after_position)))
        if len(events) == limit:
            return events, events[-1].position
        # everything below the known bound is read: what committed since comes in this page too
        more, covered = await self._read_with_bound(runner, settled - 1, limit - len(events), types)
        return events + more, covered

    def pages(
        self,
        after_position: int,
        page_size: int = 1000,
        event_types: Sequence[str] | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> AsyncGenerator[Page, None]:
        """The events after a position (of the given types) below a readable bound taken as
        the iteration starts: the whole log as of then, page by page, each with the position
        the reader has covered. The last page is short, maybe empty.

        For long stretches (catch-ups, exports, replays): the next page is asked for as soon
        as a page's rows arrive, so the server reads it while this one is decoded and used.
        Runs on `conn`, or on a pooled connection held until the iteration ends; stop early
        with `contextlib.aclosing`.
        """
        if page_size < 1:
            raise ValueError(f"a page holds at least one event, not {page_size}")
        types = list(event_types) if event_types is not None else None
        return self._pages(after_position, page_size, types, conn)

    async def _pages(
        self,
        after_position: int,
        page_size: int,
        types: list[str] | None,
        conn: asyncpg.Connection | None,
    ) -> AsyncGenerator[Page, None]:
        async with self._held(conn) as runner:
            bound = await self.readable_bound(runner)
            self._settled_below = max(self._settled_below, bound)
            fetch = _settled(runner, bound, page_size, types)
            reading = asyncio.ensure_future(fetch(after_position))
            try:
                while len(rows := await reading) == page_size:
                    reading = asyncio.ensure_future(fetch(rows[-1][0]))
                    await asyncio.sleep(0)  # the request leaves before this page is decoded
                    events = list(map(_recorded, rows))
                    yield events, events[-1].position
                yield list(map(_recorded, rows)), max(bound - 1, after_position)
            finally:
                await asyncio.wait([reading])  # a page asked for ends before the connection is free

    @asynccontextmanager
    async def _held(self, conn: asyncpg.Connection | None) -> AsyncIterator[Runner]:
        if conn is not None:
            yield conn
            return
        async with self.pool.acquire() as pooled:
            yield pooled

    async def _read_with_bound(
        self, runner: Runner, after_position: int, limit: int, types: list[str] | None
    ) -> tuple[list[RecordedEvent], int]:
        """A fresh bound and the page below it, in one round trip (`read_log_as_written`)."""
        rows = await runner.fetch(READ_LOG, after_position, limit, types)
        bound: int = rows[0][0]
        self._settled_below = max(self._settled_below, bound)
        events = [] if rows[0][1] is None else [RecordedEvent.from_log(r) for r in rows]
        if len(events) == limit:
            return events, events[-1].position
        return events, max(bound - 1, after_position)

    async def head_position(self) -> int:
        """The highest position readers may see now (it may belong to a rolled-back append)."""
        return await self.readable_bound() - 1

    async def command_result(self, command_id: str) -> StoredResult | None:
        row = await self.pool.fetchrow(COMMAND_RESULT, command_id)
        return StoredResult(*row.values()) if row else None

    async def expire_command_results(
        self, older_than: float, batch: int = 1000, batches: int = 10
    ) -> int:
        """Forget the results of commands handled over `older_than` seconds ago, in at most
        `batches` short transactions of `batch` rows; returns how many were deleted."""
        return await delete_in_batches(
            self.pool, EXPIRE_COMMAND_RESULTS, older_than, batch=batch, batches=batches
        )

    async def expire_processed_events(
        self, older_than: float, batch: int = 1000, batches: int = 10
    ) -> int:
        """Forget which events subscribers handled over `older_than` seconds ago, likewise."""
        return await delete_in_batches(
            self.pool, EXPIRE_PROCESSED_EVENTS, older_than, batch=batch, batches=batches
        )

    async def load_snapshot(
        self, aggregate_type: str, aggregate_id: str, shape: str
    ) -> tuple[int, dict[str, Any]] | None:
        """The aggregate's snapshot, if one was written by a class of the same `shape`."""
        row = await self.pool.fetchrow(
            "SELECT version, state FROM snapshots "
            "WHERE aggregate_type = $1 AND aggregate_id = $2 AND shape = $3",
            aggregate_type,
            aggregate_id,
            shape,
        )
        return (row["version"], row["state"]) if row else None

    async def save_snapshot(
        self, aggregate_type: str, aggregate_id: str, version: int, state: str, shape: str
    ) -> None:
        """Keep the newest snapshot of this shape (others stay, for the release that wrote them,
        until none has been written for a day)."""
        await self.pool.execute(
            SAVE_SNAPSHOT,
            aggregate_type,
            aggregate_id,
            version,
            state,
            shape,
        )


def _settled(runner: Runner, bound: int, limit: int, types: list[str] | None) -> Fetch:
    """What reads the page after a position below `bound`, where every position is settled."""
    if types is None:
        return lambda after: runner.fetch(READ_SETTLED, after, bound, limit)
    return lambda after: runner.fetch(READ_SETTLED_OF_TYPES, after, bound, limit, types)


def _arguments(
    events: Sequence[NewEvent],
    correlation_id: str | None,
    causation_id: str | None,
    command: CommandRecord | None,
) -> tuple[Any, ...]:
    recorded = (
        (command.command_id, command.message_type, command.result, command.fingerprint)
        if command
        else ()
    )
    if not events:
        return recorded
    metadata = _metadata_texts(events, correlation_id)
    return event_arguments(events, metadata, correlation_id, causation_id) + recorded


def stored_metadata(metadata: dict[str, Any], correlation_id: str | None) -> dict[str, Any]:
    """An event's metadata as the log keeps it: naming the request it came from."""
    return {**metadata, "correlationId": correlation_id} if correlation_id else metadata


def _metadata_texts(events: Sequence[NewEvent], correlation_id: str | None) -> list[str]:
    """Each event's metadata as JSON naming the request it came from, as the column does.

    The events of one command share their metadata: each distinct dict is encoded once.
    """
    encoded: dict[int, str] = {}
    texts = []
    for event in events:
        text = encoded.get(id(event.metadata))
        if text is None:
            text = encode_json(stored_metadata(event.metadata, correlation_id))
            encoded[id(event.metadata)] = text
        texts.append(text)
    return texts
