"""A frozen appender holds the log's readers back no longer than APPEND_STALL_TIMEOUT."""

import uuid

import asyncpg
import pytest

from examples.orders.contracts import PlaceOrder
from pipelines.database import connect
from pipelines.eventstore import NewEvent
from pipelines.instance import ServiceInstance
from pipelines.rpc import RpcClient
from pipelines.status_report import event_log
from tests.conftest import eventually

ITEMS = [{"sku": "plum", "quantity": 1, "unitPrice": "1.00"}]
STALL = 1.0


async def test_a_frozen_appender_is_cut_and_readers_move_on(
    settings, orders: ServiceInstance, rpc: RpcClient, token
) -> None:
    store = orders.runtime.store
    assert store is not None
    frozen = await connect(settings.model_copy(update={"append_stall_timeout": STALL}))
    transaction = frozen.transaction()
    await transaction.start()
    stalled = await store.append(
        [NewEvent("Stall", uuid.uuid4().hex, 1, "Stalled", "{}")], conn=frozen
    )
    assert stalled is not None
    # the appender's host freezes here: it never commits nor sends anything again
    auth = token("stall", "orders:place")
    place = PlaceOrder.model_validate({"customerId": "stall", "items": ITEMS})
    placed_at = (await rpc.send("orders", place, token=auth)).position
    assert placed_at is not None and placed_at > stalled
    assert await store.readable_bound() <= stalled  # readers wait for the frozen append
    assert await store.oldest_append_seconds() > 0
    assert "oldest append in flight" in "\n".join((await event_log(settings))[0].lines)

    async def moved_on() -> bool:
        return await store.readable_bound() > placed_at

    await eventually(moved_on, timeout=STALL + 4, what="PostgreSQL to cut the frozen appender")
    assert await store.oldest_append_seconds() == 0
    # its session is gone, however asyncpg learns it (an error from the server, the socket,
    # or its own state while it is still taking the connection down): nothing was written
    gone = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
    with pytest.raises(gone):
        await transaction.commit()
    assert not await store.pool.fetchval("SELECT 1 FROM events WHERE position = $1", stalled)
    frozen.terminate()
