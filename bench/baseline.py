"""Hand-written baselines: raw aio-pika and asyncpg doing the work the SDK does, and no more.

- `RawRpcClient`: a direct reply-to client; both the SDK and the baseline service are called
  through it, so the client is not what differs.
- `BaselineOrders`: the PlaceOrder path by hand (decode, check, verify the JWT, idempotency
  lookup, event + command result in one transaction, reply, ack after commit).
- `BaselineAppender`: event inserts into a plain table (bigserial position, no lock).
"""

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from decimal import Decimal, InvalidOperation
from typing import Any

import aio_pika
import asyncpg
import jwt
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from pipelines.settings import Settings

REPLY_TO = "amq.rabbitmq.reply-to"

# Copies of the platform's event log and idempotency table (columns, defaults, constraints,
# indexes), taken from the migrated SDK schema so they stay identical; the copy's position is
# a plain bigserial.
COPY_TABLES = """
CREATE TABLE events (LIKE {source}.events INCLUDING ALL);
CREATE SEQUENCE events_position_seq OWNED BY events.position;
ALTER TABLE events ALTER COLUMN position SET DEFAULT nextval('events_position_seq');
CREATE TABLE command_results (LIKE {source}.command_results INCLUDING ALL);
"""

INSERT_EVENT = (
    "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, data, "
    "metadata, correlation_id, causation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "RETURNING position"
)
INSERT_EVENTS = (
    "WITH added AS (INSERT INTO events (event_id, aggregate_type, aggregate_id, version, "
    "event_type, data, metadata, correlation_id, causation_id) "
    "SELECT e.*, $8, $9 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], "
    "$6::jsonb[], $7::jsonb[]) AS e RETURNING position) SELECT max(position) FROM added"
)
SELECT_RESULT = "SELECT result, position FROM command_results WHERE command_id = $1"
INSERT_RESULT = (
    "INSERT INTO command_results (command_id, message_type, result, position) "
    "VALUES ($1, $2, $3, $4)"
)


async def create_schema(dsn: str, schema: str, source: str) -> None:
    """`schema` with copies of the event tables of the (migrated) SDK schema `source`."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(COPY_TABLES.format(source=f'"{source}"'))
    finally:
        await conn.close()


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def create_pool(dsn: str, schema: str, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min(2, size),
        max_size=size,
        server_settings={"search_path": schema},
    )


class RawRpcClient:
    """Requests over one channel, replies on direct reply-to, matched by correlation id."""

    def __init__(self) -> None:
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}

    async def connect(self, url: str) -> None:
        self._connection = await aio_pika.connect_robust(url)
        self._channel = await self._connection.channel(publisher_confirms=False)
        queue = await self._channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message)

    async def call(
        self,
        queue: str,
        body: bytes,
        headers: dict[str, Any],
        timeout: float = 30.0,
    ) -> AbstractIncomingMessage:
        assert self._channel is not None, "connect() first"
        key = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    headers={"x-correlation-id": key, **headers},
                    correlation_id=key,
                    reply_to=REPLY_TO,
                    message_id=uuid.uuid4().hex,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue,
            )
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(key, None)


class Refused(Exception):
    """Bad input or no permission: answered with an error, never retried."""


def parse_place_order(body: bytes) -> dict[str, Any]:
    """JSON-decode a PlaceOrder and check its shape minimally."""
    try:
        command = json.loads(body)
        items = command["items"]
        valid = (
            _text(command["customerId"], 128)
            and isinstance(items, list)
            and 0 < len(items) <= 500
            and all(map(_valid_line, items))
        )
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise Refused(f"invalid PlaceOrder: {exc}") from exc
    if not valid:
        raise Refused("invalid PlaceOrder")
    return command  # type: ignore[no-any-return]


def _text(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length


def _valid_line(line: dict[str, Any]) -> bool:
    quantity = line["quantity"]
    return (
        _text(line["sku"], 64)
        and isinstance(quantity, int)
        and 0 < quantity <= 10_000
        and Decimal(line["unitPrice"]) >= 0
    )


class BaselineOrders:
    """The orders service's PlaceOrder, written by hand against aio-pika and asyncpg."""

    def __init__(
        self,
        url: str,
        pool: asyncpg.Pool,
        queue: str,
        *,
        jwt_secret: str,
        prefetch: int,
    ) -> None:
        self.url, self.pool, self.queue_name = url, pool, queue
        self.jwt_secret, self.prefetch = jwt_secret, prefetch
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.url)
        self._channel = await self._connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self._queue = await self._channel.declare_queue(self.queue_name, durable=True)
        await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            body, headers = await self._handle(message)
        except Refused as exc:
            body, headers = json.dumps({"error": str(exc)}).encode(), {"x-status": "error"}
        except Exception:
            await message.nack(requeue=False)
            raise
        assert self._channel is not None
        if message.reply_to:
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    headers=headers,
                    correlation_id=message.correlation_id,
                    content_type="application/json",
                ),
                routing_key=message.reply_to,
                mandatory=False,
            )
        await message.ack()

    def _caller(self, message: AbstractIncomingMessage) -> dict[str, Any]:
        token = (message.headers or {}).get("x-user-token")
        try:
            claims: dict[str, Any] = jwt.decode(
                str(token),
                self.jwt_secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise Refused(f"invalid token: {exc}") from exc
        if "orders:place" not in claims.get("permissions", ()):
            raise Refused("PlaceOrder requires orders:place")
        return claims

    async def _handle(self, message: AbstractIncomingMessage) -> tuple[bytes, dict[str, Any]]:
        command = parse_place_order(message.body)
        claims = self._caller(message)
        command_id = message.message_id or uuid.uuid4().hex
        correlation_id = str((message.headers or {}).get("x-correlation-id", command_id))
        async with self.pool.acquire() as conn:
            done = await conn.fetchrow(SELECT_RESULT, command_id)
            if done is not None:
                return done["result"].encode(), _ok(done["position"])
            order_id = str(uuid.uuid4())
            data, result = _order_placed(order_id, command)
            metadata = json.dumps(
                {"service": "orders", "messageType": "PlaceOrder", "userId": claims["sub"]}
            )
            async with conn.transaction():
                position = await conn.fetchval(
                    INSERT_EVENT,
                    uuid.uuid4(),
                    "Order",
                    order_id,
                    1,
                    "OrderPlaced",
                    data,
                    metadata,
                    correlation_id,
                    command_id,
                )
                await conn.execute(INSERT_RESULT, command_id, "PlaceOrder", result, position)
        return result.encode(), _ok(position)


def _ok(position: int) -> dict[str, Any]:
    return {"x-status": "ok", "x-event-position": position}


def _order_placed(order_id: str, command: dict[str, Any]) -> tuple[str, str]:
    """The OrderPlaced event's data and the command's result, as JSON text."""
    items = command["items"]
    total = sum((Decimal(i["unitPrice"]) * int(i["quantity"]) for i in items), Decimal(0))
    data = {
        "orderId": order_id,
        "customerId": command["customerId"],
        "items": items,
        "total": str(total),
    }
    return json.dumps(data), json.dumps({"orderId": order_id})


class BaselineAppender:
    """Plain INSERTs of events: one row, or a batch in one statement with unnest."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append_one(
        self, aggregate_id: str, event_type: str, data: str, metadata: dict[str, Any]
    ) -> int:
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            INSERT_EVENT,
            uuid.uuid4(),
            "Bench",
            aggregate_id,
            1,
            event_type,
            data,
            json.dumps(metadata),
            None,
            None,
        )

    async def append_batch(
        self, aggregate_id: str, event_type: str, data: list[str], metadata: dict[str, Any]
    ) -> int:
        n = len(data)
        meta = json.dumps(metadata)
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            INSERT_EVENTS,
            [uuid.uuid4() for _ in range(n)],
            ["Bench"] * n,
            [aggregate_id] * n,
            list(range(1, n + 1)),
            [event_type] * n,
            data,
            [meta] * n,
            None,
            None,
        )


def baseline_orders(settings: Settings, pool: asyncpg.Pool, queue: str) -> BaselineOrders:
    """The hand-written orders service, configured as the SDK's service is."""
    return BaselineOrders(
        settings.rabbitmq_url,
        pool,
        queue,
        jwt_secret=settings.jwt_secret,
        prefetch=settings.prefetch_count,
    )


async def start_baseline_orders(
    settings: Settings, schema: str, queue: str, stack: AsyncExitStack
) -> RawRpcClient:
    """The hand-written orders service on its own tables, and a raw client to call it."""
    pool = await create_pool(settings.database_url, schema, settings.database_pool_size)
    stack.push_async_callback(pool.close)
    orders = baseline_orders(settings, pool, queue)
    stack.push_async_callback(orders.stop)
    await orders.start()
    client = RawRpcClient()
    stack.push_async_callback(client.close)
    await client.connect(settings.rabbitmq_url)
    return client
