"""A synthetic `orders` event log, written straight into the events table with one INSERT.

Positions come in blocks of five: four `OrderPlaced` (1-3 lines each) and one
`OrderCancelled` of an order placed LAG blocks (about 10,000 positions) earlier, or in its own
block near the start. The data is shaped exactly as the `examples.orders` contracts serialize
it; positions come from `events_position_seq` (under the in-flight lock every append takes) and each
order has version 1 (placed) and, when cancelled, 2.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg

PLACED = "OrderPlaced"
CANCELLED = "OrderCancelled"
EVENT_TYPES = [PLACED, CANCELLED]
METADATA = '{"service": "orders"}'
BASKETS = 7919  # distinct order contents (1-3 lines), reused round-robin
LAG = 2002  # blocks between an order and its cancellation; LAG % 4 == 2 keeps targets unique

# Row n (0-based) is in block b = n / 5 at slot s = n % 5; slots 0-3 place order 4b+s+1,
# slot 4 cancels order 4c+(b%4)+1 with c = b-LAG (or c = b in the first LAG blocks).
# $1 events, $2 first position, $3 time of the first event, $4 metadata.
INSERT_LOG = f"""
WITH basket AS MATERIALIZED (
    SELECT m, jsonb_agg(jsonb_build_object('sku', 'sku-' || ((m * 7 + i) % 1000),
                                           'quantity', v.q, 'unitPrice', v.p::text)
                        ORDER BY i) AS items,
           sum(v.q * v.p)::text AS total
    FROM generate_series(0, {BASKETS - 1}) AS m
    CROSS JOIN generate_series(1, 3) AS i
    CROSS JOIN LATERAL (
        SELECT 1 + ((m + i) % 5) AS q,
               round((((m * 37 + i * 101) % 5000) + 1)::numeric / 100, 2) AS p
    ) AS v
    WHERE i <= 1 + m % 3
    GROUP BY m
)
INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version, event_type,
                    data, metadata, occurred_at, correlation_id)
SELECT $2 + n, gen_random_uuid(), 'Order', o.id, t.version,
       CASE WHEN t.version = 1 THEN '{PLACED}' ELSE '{CANCELLED}' END,
       CASE WHEN t.version = 1
            THEN jsonb_build_object('orderId', o.id, 'customerId', o.customer,
                                    'items', b.items, 'total', b.total)
            ELSE jsonb_build_object('orderId', o.id, 'customerId', o.customer,
                                    'reason', CASE WHEN n % 2 = 0 THEN 'changed my mind' END)
       END,
       $4::jsonb, $3::timestamptz + n * interval '1 millisecond', gen_random_uuid()::text
FROM generate_series(0, $1::bigint - 1) AS n
CROSS JOIN LATERAL (
    SELECT CASE WHEN n % 5 < 4 THEN 4 * (n / 5) + n % 5 + 1
                WHEN n / 5 < {LAG} THEN 4 * (n / 5) + (n / 5) % 4 + 1
                ELSE 4 * (n / 5 - {LAG}) + (n / 5) % 4 + 1 END AS k,
           CASE WHEN n % 5 < 4 THEN 1 ELSE 2 END AS version
) AS t
CROSS JOIN LATERAL (
    SELECT md5('order-' || t.k)::uuid::text AS id, 'customer-' || (t.k % 5000) AS customer
) AS o
JOIN basket AS b ON b.m = t.k % {BASKETS}
ORDER BY n
"""


# Secondary indexes are dropped for the bulk insert and rebuilt after it: much faster.
SECONDARY_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS index_ddl,
       con.conname AS constraint_name, pg_get_constraintdef(con.oid) AS constraint_ddl
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
LEFT JOIN pg_constraint AS con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
WHERE i.indrelid = 'events'::regclass AND NOT i.indisprimary
"""


@asynccontextmanager
async def secondary_indexes_dropped(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Inside a transaction: drop the events table's secondary indexes, recreate them after."""
    indexes = await conn.fetch(SECONDARY_INDEXES)
    for index in indexes:
        if index["constraint_name"]:
            await conn.execute(f'ALTER TABLE events DROP CONSTRAINT "{index["constraint_name"]}"')
        else:
            await conn.execute(f'DROP INDEX "{index["name"]}"')
    yield
    for index in indexes:
        if index["constraint_name"]:
            await conn.execute(
                f'ALTER TABLE events ADD CONSTRAINT "{index["constraint_name"]}" '
                f"{index['constraint_ddl']}"
            )
        else:
            await conn.execute(index["index_ddl"])


async def generate(conn: asyncpg.Connection, events: int, schema: str) -> None:
    """Append `events` order events to the (empty) log of the connection's schema."""
    start = datetime.now(UTC) - timedelta(milliseconds=events + 1000)
    async with conn.transaction():
        for setting in ("jit = off", "work_mem = '256MB'", "maintenance_work_mem = '512MB'"):
            await conn.execute(f"SET LOCAL {setting}")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{schema}.events")
        first = await conn.fetchval("SELECT nextval('events_position_seq')")
        async with secondary_indexes_dropped(conn):
            await conn.execute(INSERT_LOG, events, first, start, METADATA)
        await conn.execute("SELECT setval('events_position_seq', $1)", first + events - 1)
    await conn.execute("VACUUM ANALYZE events")  # hint bits set: no reader pays for them
