"""A document projection's live batch: its writes and its checkpoint in one statement."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from examples.orders.contracts import OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected
from pipelines.database import Pool, connect
from pipelines.eventstore import EventStore, NewEvent, RecordedEvent
from pipelines.settings import Settings
from projections import Documents, Projection, SqlTable, state
from projections.runner import ProjectionRunner
from tests.conftest import eventually
from tests.roundtrips import counting

live_batch = Projection("live_batch")
UNHANDLED = "live-batch-unhandled"  # the customer whose orders its handler fails on


@live_batch.on(OrderPlaced)
async def placed(event: OrderPlaced, docs: Documents, meta: RecordedEvent) -> None:
    if event.customer_id == UNHANDLED:
        raise ValueError(f"cannot handle {UNHANDLED}")
    docs.put(event.order_id, {"status": "placed"})


@live_batch.on(OrderConfirmed)
async def confirmed(event: OrderConfirmed, docs: Documents, meta: RecordedEvent) -> None:
    docs.patch(event.order_id, {"status": "confirmed"})


live_sql = Projection("live_sql", schema="CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY)")


@live_sql.on(OrderPlaced)
async def inserted(event: OrderPlaced, table: SqlTable, meta: RecordedEvent) -> None:
    await table.execute("INSERT INTO {table} VALUES ($1) ON CONFLICT DO NOTHING", event.order_id)


@live_batch.on(OrderRejected)
async def rejected(event: OrderRejected, docs: Documents, meta: RecordedEvent) -> None:
    docs.put(event.order_id, {"status": "rejected"})  # a whole new document


@live_batch.on(OrderCancelled)
async def cancelled(event: OrderCancelled, docs: Documents, meta: RecordedEvent) -> None:
    docs.delete(event.order_id)


def event(event_type: str, order_id: str, version: int, customer: str = "live") -> NewEvent:
    data = {"orderId": order_id, "customerId": customer, "items": [], "total": "0", "reason": "-"}
    return NewEvent("Order", order_id, version, event_type, json.dumps(data), {"service": "orders"})


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings)
    yield conn
    await conn.close()


async def caught_up(
    projection: Projection, settings: Settings, pool: Pool, conn: asyncpg.Connection
) -> ProjectionRunner:
    """A runner of `projection` at the end of the log, stepped by hand on `conn`."""
    runner: ProjectionRunner = projection.runner(settings, pool, None)
    current = await state.ensure(conn, projection)
    runner.position, runner.generation = current.position, current.generation
    while await runner.step(conn):
        pass
    assert not runner.failed
    return runner


@pytest.fixture
async def runner(settings: Settings, orders, conn) -> ProjectionRunner:
    return await caught_up(live_batch, settings, orders.runtime.pool, conn)


async def documents(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT id, doc->>'status' AS status FROM live_batch")
    return {r["id"]: r["status"] for r in rows}


async def test_a_live_batch_is_written_and_checkpointed_in_one_round_trip(
    runner, orders, conn
) -> None:
    store: EventStore = orders.runtime.store
    a, b, c, d, e = (str(uuid.uuid4()) for _ in range(5))
    await store.append([event("OrderPlaced", i, 1) for i in (a, b, c)])
    assert not await runner.step(conn)
    # a put, a patch and a delete: twice, the second time with every statement prepared
    await store.append([event("OrderPlaced", d, 1), event("OrderConfirmed", a, 2),
                        event("OrderCancelled", b, 2)])  # fmt: skip
    assert not await runner.step(conn)
    await store.append([event("OrderPlaced", e, 1), event("OrderConfirmed", c, 2),
                        event("OrderCancelled", d, 2)])  # fmt: skip
    with counting(conn) as counter:
        assert not await runner.step(conn)
    assert counter.round_trips == 3  # read the events, write them, announce the checkpoint
    written = await documents(conn)
    assert {i: written.get(i) for i in (a, b, c, d, e)} == {
        a: "confirmed", b: None, c: "confirmed", d: None, e: "placed"
    }  # fmt: skip
    assert (await state.load(conn, "live_batch")).position == runner.position


async def test_writes_to_one_document_in_a_batch_become_one_write(runner, orders, conn) -> None:
    """One statement may modify a row only once: a put, patch or delete replaces the batch's
    earlier write of the same id."""
    kept, gone = str(uuid.uuid4()), str(uuid.uuid4())
    await orders.runtime.store.append([event("OrderPlaced", gone, 1)])
    assert not await runner.step(conn)
    writes = ["OrderPlaced", "OrderConfirmed", "OrderCancelled", "OrderRejected", "OrderConfirmed"]
    await orders.runtime.store.append(
        [event(kind, kept, version) for version, kind in enumerate(writes, 1)]
        + [event("OrderConfirmed", gone, 2), event("OrderCancelled", gone, 3),
           event("OrderConfirmed", gone, 4)]
    )  # fmt: skip
    assert not await runner.step(conn)
    written = await documents(conn)
    assert written[kept] == "confirmed" and gone not in written


async def test_a_batch_waiting_for_a_checkpoint_that_moves_writes_nothing(
    runner, orders, settings, conn
) -> None:
    """The checkpoint's row is locked (a swap, a skip) while a batch would move it: once it
    is moved elsewhere, the batch has no effect and the runner follows the checkpoint."""
    order = str(uuid.uuid4())
    await superseded_while_waiting(runner, settings, orders.runtime.store, conn, order)
    assert order not in await documents(conn)


async def test_a_sql_projections_batch_waiting_for_a_moved_checkpoint_writes_nothing(
    orders, settings, conn
) -> None:
    """Its handlers write as they run: its batch is rolled back with the checkpoint."""
    pool = orders.runtime.pool
    runner = await caught_up(live_sql, settings, pool, conn)
    order = str(uuid.uuid4())
    await superseded_while_waiting(runner, settings, orders.runtime.store, conn, order)
    assert not await conn.fetchval("SELECT count(*) FROM live_sql WHERE id = $1", order)


async def superseded_while_waiting(
    runner: ProjectionRunner,
    settings: Settings,
    store: EventStore,
    conn: asyncpg.Connection,
    order: str,
) -> None:
    """Place `order`; step the runner while another session holds its checkpoint, until it
    waits for the row; then move the checkpoint past the order and let it go."""
    name = runner.projection.name
    moved = await store.append([event("OrderPlaced", order, 1)])
    holder = await connect(settings)
    try:
        async with holder.transaction():
            await state.load(holder, name, lock=True)
            stepping = asyncio.create_task(runner.step(conn))
            pid = conn.get_server_pid()
            await eventually(lambda: waits_for_a_lock(holder, pid), what="the batch to wait")
            await holder.execute(
                "UPDATE projection_positions SET position = $2 WHERE name = $1", name, moved
            )
        assert await stepping  # superseded: ready to read on from the moved checkpoint
    finally:
        await holder.close()
    assert runner.position == moved


async def waits_for_a_lock(conn: asyncpg.Connection, pid: int) -> bool:
    waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
    return bool(await conn.fetchval(waiting, pid))


async def test_a_failing_event_stops_the_batch_after_its_good_prefix(runner, orders, conn) -> None:
    good, bad, after = (str(uuid.uuid4()) for _ in range(3))
    events = [event("OrderPlaced", good, 1), event("OrderPlaced", bad, 1, UNHANDLED),
              event("OrderPlaced", after, 1)]  # fmt: skip
    last = await orders.runtime.store.append(events)
    assert not await runner.step(conn)
    stopped = await state.load(conn, "live_batch")
    assert (stopped.state, stopped.error_position) == ("failed", last - 1)
    assert stopped.position == last - 2 == runner.position
    written = await documents(conn)
    assert good in written and bad not in written and after not in written
    await state.skip(conn, "live_batch")  # leave it running for the next test
    while await runner.step(conn):
        pass
