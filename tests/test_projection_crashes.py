"""kill -9 a projection runner mid-update and a rebuild mid-way: nothing lost or applied twice."""

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from examples.orders.contracts import PlaceOrder
from pipelines.database import Pool
from pipelines.eventstore import NewEvent
from tests.conftest import eventually
from tests.folds import caught_up, folded_orders, projected_orders

ITEMS = [{"sku": "date", "quantity": 1, "unitPrice": "3.00"}]


async def spawn(*argv: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *argv, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def test_runner_killed_mid_update_loses_and_repeats_nothing(orders, rpc, token) -> None:
    pool = orders.runtime.pool
    await orders._stop_background()  # the child process must be the one applying
    child = await spawn("-m", "faststream", "run", "examples.orders:app", RELAY_ENABLED="false")
    try:
        auth = token("crash", "orders:place")
        command = PlaceOrder.model_validate({"customerId": "crash", "items": ITEMS})
        sending = [asyncio.create_task(rpc.send("orders", command, token=auth)) for _ in range(300)]
        await eventually(lambda: sum(t.done() for t in sending) >= 100, what="100 replies")
        child.kill()  # SIGKILL, mid-stream
        await child.wait()
        assert all(r.ok for r in await asyncio.gather(*sending))
        child = await spawn("-m", "faststream", "run", "examples.orders:app", RELAY_ENABLED="false")
        await eventually(lambda: caught_up(pool), timeout=30, what="the restarted runner")
        assert await projected_orders(pool) == await folded_orders(pool)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            await asyncio.wait_for(child.wait(), 30)
        await orders._start_background()


def placed_events(count: int) -> list[NewEvent]:
    events = []
    for _ in range(count):
        order = str(uuid.uuid4())
        data = {"orderId": order, "customerId": "bulk", "items": ITEMS, "total": "3.00"}
        events.append(
            NewEvent("Order", order, 1, "OrderPlaced", json.dumps(data), {"service": "orders"})
        )
    return events


# Holds the rebuild's second checkpoint while the test holds advisory lock 22: the rebuild is
# killed mid-way however fast it runs.
STALL_AFTER_ONE_BATCH = """
CREATE FUNCTION stall_rebuild() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.position > 0 THEN PERFORM pg_advisory_xact_lock(22); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER stall_rebuild BEFORE UPDATE ON projection_rebuilds
    FOR EACH ROW EXECUTE FUNCTION stall_rebuild();
"""
STALLED = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 22 AND NOT granted"


@asynccontextmanager
async def rebuilds_stall_after_one_batch(pool: Pool) -> AsyncIterator[None]:
    """Inside: a rebuild's second checkpoint waits. After: the trigger is gone and the pooled
    connection holds no lock, whatever happened inside."""
    async with pool.acquire() as holder:
        await holder.execute(STALL_AFTER_ONE_BATCH)
        await holder.execute("SELECT pg_advisory_lock(22)")
        try:
            yield
        finally:
            await holder.execute("SELECT pg_advisory_unlock(22)")
            await holder.execute("DROP TRIGGER stall_rebuild ON projection_rebuilds")
            await holder.execute("DROP FUNCTION stall_rebuild()")


async def test_rebuild_killed_mid_way_resumes(settings, orders) -> None:
    store, pool = orders.runtime.store, orders.runtime.pool
    for _ in range(20):
        await store.append(placed_events(250))
    await eventually(lambda: caught_up(pool), timeout=30, what="the live runner")
    env = {"REBUILD_BATCH_SIZE": "100", "LOG_LEVEL": "WARNING"}
    async with rebuilds_stall_after_one_batch(pool):
        child = await spawn("-m", "pipelines.cli", "projections", "rebuild", "order_summary", **env)
        try:
            await eventually(
                lambda: pool.fetchval(STALLED),
                timeout=30, what="the rebuild to stall after one batch",
            )  # fmt: skip
        finally:
            child.kill()
            output, _ = await child.communicate()
    stopped = await pool.fetchval("SELECT position FROM projection_rebuilds")
    assert 0 < stopped < await store.head_position(), output.decode()
    child = await spawn("-m", "pipelines.cli", "projections", "rebuild", "order_summary", **env)
    output, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, output.decode()
    assert b"resuming" in output and b"rebuilt" in output
    assert await pool.fetchval("SELECT count(*) FROM projection_rebuilds") == 0
    assert await projected_orders(pool) == await folded_orders(pool)
