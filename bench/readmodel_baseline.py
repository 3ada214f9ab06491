"""Hand-written baselines for the read-model path: asyncpg, redis and aio-pika, nothing else.

- `rebuild`: replay the log in batches into a fresh table, checkpoint committed per batch.
- `Follower`: LISTEN for new events and fold them into its table right away, then checkpoint
  and NOTIFY in the same transaction (the job of the SDK's projection runner).
- `QueryService`: answer GetOrder from one Redis GET behind an aio-pika consumer.

Both folds write the documents the `order_summary` projection writes, into a table with the
same columns and indexes. They read only below the log's `readable_bound()` (as the SDK does),
without which a reader can skip an event whose append commits after a later one's.
"""

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import aio_pika
import asyncpg
import jwt
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from bench.orderlog import EVENT_TYPES, PLACED

Doc = dict[str, Any]
READ_EVENTS = (
    "SELECT position, event_type, data, occurred_at FROM events WHERE position > $1 "
    "AND position < $2 AND event_type = ANY($4::text[]) ORDER BY position LIMIT $3"
)
UPSERT = (
    'INSERT INTO "{table}" (id, doc) SELECT * FROM unnest($1::text[], $2::jsonb[]) '
    "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = now()"
)
MERGE = (
    'UPDATE "{table}" AS t SET doc = t.doc || p.changes, updated_at = now() '
    "FROM unnest($1::text[], $2::jsonb[]) AS p(id, changes) WHERE t.id = p.id"
)
CHECKPOINT = "UPDATE bench_checkpoints SET position = $2 WHERE name = $1"


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    for name in ("jsonb", "json"):  # the read model's documents, the log's events
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


async def create_table(conn: asyncpg.Connection, table: str) -> None:
    """A fresh read-model table (as the SDK's: id, doc, updated_at, three indexes)."""
    async with conn.transaction():
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        await conn.execute(
            f'CREATE TABLE "{table}" (id text PRIMARY KEY, doc jsonb NOT NULL, '
            "updated_at timestamptz NOT NULL DEFAULT now())"
        )
        for field in ("customerId", "status", "placedAt"):
            await conn.execute(f"CREATE INDEX ON \"{table}\" ((doc->>'{field}'))")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_checkpoints (name text PRIMARY KEY, position bigint)"
        )
        await conn.execute(
            "INSERT INTO bench_checkpoints VALUES ($1, 0) ON CONFLICT (name) "
            "DO UPDATE SET position = 0",
            table,
        )


def fold(rows: Sequence[asyncpg.Record]) -> tuple[dict[str, Doc], dict[str, Doc]]:
    """Whole documents to write and changes to merge into stored ones, per order id."""
    puts: dict[str, Doc] = {}
    patches: dict[str, Doc] = {}
    for row in rows:
        data = row["data"]
        at = row["occurred_at"].isoformat()
        if row["event_type"] == PLACED:
            puts[data["orderId"]] = {**data, "status": "placed", "placedAt": at}
            continue
        change = {"status": "cancelled", "cancelledAt": at, "cancelReason": data.get("reason")}
        if data["orderId"] in puts:
            puts[data["orderId"]].update(change)
        else:
            patches.setdefault(data["orderId"], {}).update(change)
    return puts, patches


async def read(conn: asyncpg.Connection, position: int, batch: int) -> list[asyncpg.Record]:
    """The next events after `position`, none of them past a position still in flight."""
    bound = await conn.fetchval("SELECT readable_bound()")
    rows: list[asyncpg.Record] = await conn.fetch(READ_EVENTS, position, bound, batch, EVENT_TYPES)
    return rows


async def apply(conn: asyncpg.Connection, table: str, rows: Sequence[asyncpg.Record]) -> int:
    """Fold `rows` into `table` and move its checkpoint, in the caller's transaction."""
    puts, patches = fold(rows)
    if puts:
        await conn.execute(UPSERT.format(table=table), list(puts), list(puts.values()))
    if patches:
        await conn.execute(MERGE.format(table=table), list(patches), list(patches.values()))
    position: int = rows[-1]["position"]
    await conn.execute(CHECKPOINT, table, position)
    return position


async def rebuild(conn: asyncpg.Connection, table: str, batch: int) -> int:
    """Replay the whole log into a fresh `table`; returns the number of events applied."""
    await create_table(conn, table)
    position = applied = 0
    while rows := await read(conn, position, batch):
        async with conn.transaction():
            position = await apply(conn, table, rows)
        applied += len(rows)
    return applied


class Follower:
    """Keeps `table` up to date with the log; NOTIFY `{schema}.{table}` carries its position."""

    def __init__(self, dsn: str, schema: str, table: str, batch: int, poll: float) -> None:
        self.dsn, self.schema, self.table = dsn, schema, table
        self.batch, self.poll = batch, poll
        self.channel = f"{schema}.{table}"
        self._wake = asyncio.Event()

    async def run(self) -> None:
        conn = await connect(self.dsn, self.schema)
        try:
            await create_table(conn, self.table)
            await conn.add_listener(f"{self.schema}.events", lambda *_: self._wake.set())
            position = 0
            while True:
                self._wake.clear()
                rows = await read(conn, position, self.batch)
                if not rows:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll)
                    continue
                async with conn.transaction():
                    position = await apply(conn, self.table, rows)
                    await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(position))
        finally:
            await asyncio.shield(conn.close())


class QueryService:
    """GetOrder by hand: verify the caller's token, GET the cached answer, reply, ack."""

    def __init__(
        self, url: str, queue: str, cache: aioredis.Redis, key_prefix: str, jwt_secret: str
    ) -> None:
        self.url, self.queue_name, self.cache = url, queue, cache
        self.key_prefix, self.jwt_secret = key_prefix, jwt_secret
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    def key(self, order_id: str) -> str:
        return f"{self.key_prefix}:{order_id}"

    async def start(self, prefetch: int) -> None:
        self._connection = await aio_pika.connect_robust(self.url)
        self._channel = await self._connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=prefetch)
        queue = await self._channel.declare_queue(self.queue_name, durable=True)
        await queue.consume(self._on_message)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        body, status = await self._answer(message)
        assert self._channel is not None
        if message.reply_to:
            headers = message.headers or {}
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    headers={
                        "x-status": status,
                        "x-correlation-id": headers.get("x-correlation-id"),
                        "x-cache": "hit",
                    },
                    correlation_id=message.correlation_id,
                    content_type="application/json",
                ),
                routing_key=message.reply_to,
                mandatory=False,
            )
        await message.ack()

    async def _answer(self, message: AbstractIncomingMessage) -> tuple[bytes, str]:
        try:
            claims = jwt.decode(
                str((message.headers or {}).get("x-user-token")),
                self.jwt_secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp"]},
            )
            order_id = json.loads(message.body)["orderId"]
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            return json.dumps({"error": str(exc)}).encode(), "error"
        if "orders:read" not in claims.get("permissions", ()):
            return b'{"error": "GetOrder requires orders:read"}', "error"
        cached = await self.cache.get(self.key(order_id))
        if cached is None:
            return b'{"error": "not cached"}', "error"
        return cached.encode() if isinstance(cached, str) else cached, "ok"
