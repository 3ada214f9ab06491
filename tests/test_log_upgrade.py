"""A log written before migration 0013 (data and metadata as jsonb) upgraded in place: its
events read back the same, and the previous release keeps reading during the rolling deploy."""

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pipelines.database import _apply_pending, connect, create_pool, migrate, migration_files
from pipelines.eventstore import EventStore, NewEvent
from pipelines.settings import Settings

AS_WRITTEN = "0013_events_as_written"
# what the previous release prepared and keeps running: a plain SELECT of the table, and a
# page through its function
PREVIOUS_READS = (
    "SELECT data, metadata FROM events WHERE aggregate_id = 'o-1' ORDER BY position",
    "SELECT data, metadata FROM read_log_versioned(0, 10, NULL) WHERE position IS NOT NULL",
)


@pytest.fixture
async def before(settings: Settings) -> AsyncIterator[Settings]:
    """A schema of its own, migrated up to the migration before 0013."""
    old = settings.model_copy(update={"database_schema": f"{settings.database_schema}_upgrade"})
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{old.database_schema}"')
        await conn.execute(f'SET search_path TO "{old.database_schema}"')
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        earlier = [m for m in migration_files() if m[1] < AS_WRITTEN]
        await _apply_pending(conn, earlier)
        yield old
    finally:
        await conn.execute(f'DROP SCHEMA "{old.database_schema}" CASCADE')
        await conn.close()


async def test_a_log_written_as_jsonb_reads_the_same_after_the_upgrade(before: Settings) -> None:
    pool = await create_pool(before, 2)
    previous = await connect(before)  # a connection of the release before, kept open
    try:
        store = EventStore(pool)
        data = {"orderId": "o-1", "items": [{"sku": "fig", "quantity": 2}], "total": "9.00"}
        text, meta = json.dumps(data), {"service": "orders"}
        events = [NewEvent("Order", "o-1", v, "OrderPlaced", text, meta) for v in (1, 2)]
        await store.append(events[:1])
        await previous.execute(  # the release before appends arrays of jsonb
            "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version, "
            "event_type, data, metadata) SELECT nextval('events_position_seq'), $1, 'Order', "
            "'o-1', 2, 'OrderPlaced', d, '{}' FROM unnest($2::jsonb[]) AS d",
            events[1].event_id, [data],
        )  # fmt: skip
        before_upgrade = [await previous.fetch(sql) for sql in PREVIOUS_READS]
        assert await previous.fetchval(
            "SELECT pg_typeof(data)::text FROM events LIMIT 1"
        ) == "jsonb"  # fmt: skip

        assert await migrate(before) == [f"pipelines/{AS_WRITTEN}"]

        read = await EventStore(pool).read_stream("Order", "o-1")
        assert [e.data for e in read] == [data, data]
        assert [e.metadata for e in read] == [{"service": "orders"}, {}]
        assert [await previous.fetch(sql) for sql in PREVIOUS_READS] == before_upgrade
        assert await previous.fetchval(
            "SELECT pg_typeof(data)::text FROM read_log_versioned(0, 1, NULL)"
        ) == "jsonb"  # fmt: skip
        await previous.execute(  # and the release before still appends
            "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version, "
            "event_type, data, metadata) SELECT nextval('events_position_seq'), "
            "gen_random_uuid(), 'Order', 'o-1', 3, 'OrderCancelled', d, '{}' "
            "FROM unnest($1::jsonb[]) AS d",
            [{"orderId": "o-1"}],
        )  # fmt: skip
        assert await store.stream_version("Order", "o-1") == 3
    finally:
        await previous.close()
        await pool.close()
