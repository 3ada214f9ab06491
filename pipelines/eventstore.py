"""The PostgreSQL event log: append with optimistic concurrency, read streams and the whole log."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from pipelines.database import Pool
from pipelines.errors import ConcurrencyError

EVENT_COLUMNS = (
    "position, event_id, aggregate_type, aggregate_id, version, event_type, data, metadata, "
    "occurred_at, correlation_id, causation_id"
)
DUPLICATE_COMMAND_STATE = "BNY01"  # raised by append_events()
VISIBLE = "transaction_id < pg_snapshot_xmin(pg_current_snapshot())"


@dataclass(slots=True)
class NewEvent:
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    data: str  # JSON text
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(slots=True, frozen=True)
class RecordedEvent:
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

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "RecordedEvent":
        return cls(*row.values())


@dataclass(slots=True, frozen=True)
class CommandRecord:
    """What makes a command idempotent: its id and the result to answer a duplicate with."""

    command_id: str
    message_type: str
    result: str | None  # JSON text


class DuplicateCommand(Exception):
    """The command id was already handled; its first result stands."""


@dataclass(slots=True, frozen=True)
class StoredResult:
    result: Any
    position: int | None


class EventStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

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
        DuplicateCommand when `command` was already recorded. Inside a transaction, the append
        must be its first write.
        """
        args = (
            [e.event_id for e in events],
            [e.aggregate_type for e in events],
            [e.aggregate_id for e in events],
            [e.version for e in events],
            [e.event_type for e in events],
            [e.data for e in events],
            [e.metadata for e in events],
            correlation_id,
            causation_id,
            command.command_id if command else None,
            command.message_type if command else None,
            command.result if command else None,
        )
        sql = "SELECT append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        try:
            if conn is not None:
                return await conn.fetchval(sql, *args)  # type: ignore[no-any-return]
            return await self.pool.fetchval(sql, *args)  # type: ignore[no-any-return]
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "events_aggregate_version":
                raise
            raise await self._concurrency_error(events) from exc
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == DUPLICATE_COMMAND_STATE:
                raise DuplicateCommand(command.command_id if command else "") from exc
            raise

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

    async def read_all(
        self,
        after_position: int,
        limit: int = 1000,
        event_types: Sequence[str] | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """Events after a position, in position order, never skipping one that commits later.

        Only rows of transactions older than every running transaction are returned, and
        positions follow transaction order, so no lower position can become visible afterwards.
        """
        runner = conn or self.pool
        if event_types is None:
            rows = await runner.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND {VISIBLE} "
                "ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        else:
            rows = await runner.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND {VISIBLE} "
                "AND event_type = ANY($3::text[]) ORDER BY position LIMIT $2",
                after_position,
                limit,
                list(event_types),
            )
        return [RecordedEvent.from_row(r) for r in rows]

    async def read_page(
        self,
        conn: asyncpg.Connection,
        after_position: int,
        limit: int,
        event_types: Sequence[str],
    ) -> tuple[list[RecordedEvent], int]:
        """The next events of the given types, and the position the reader has now covered.

        When fewer than `limit` events match, every visible event up to the head was
        considered, so the reader may move its checkpoint to the head.
        """
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            events = await self.read_all(after_position, limit, event_types, conn=conn)
            if len(events) == limit:
                return events, events[-1].position
            head = await conn.fetchval(
                f"SELECT coalesce(max(position), 0) FROM events WHERE {VISIBLE}"
            )
            return events, max(int(head), after_position)

    async def head_position(self) -> int:
        """The highest position readers may see now."""
        value = await self.pool.fetchval(
            f"SELECT coalesce(max(position), 0) FROM events WHERE {VISIBLE}"
        )
        return int(value)

    async def command_result(self, command_id: str) -> StoredResult | None:
        row = await self.pool.fetchrow(
            "SELECT result, position FROM command_results WHERE command_id = $1", command_id
        )
        return StoredResult(row["result"], row["position"]) if row else None

    async def load_snapshot(
        self, aggregate_type: str, aggregate_id: str
    ) -> tuple[int, dict[str, Any]] | None:
        row = await self.pool.fetchrow(
            "SELECT version, state FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
            aggregate_type,
            aggregate_id,
        )
        return (row["version"], row["state"]) if row else None

    async def save_snapshot(
        self, aggregate_type: str, aggregate_id: str, version: int, state: str
    ) -> None:
        await self.pool.execute(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, version, state) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE "
            "SET version = excluded.version, state = excluded.state, created_at = now() "
            "WHERE snapshots.version < excluded.version",
            aggregate_type,
            aggregate_id,
            version,
            state,
        )
