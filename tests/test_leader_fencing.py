"""Leaders that lost their lock session step down before acting again: no split brain."""

import asyncio
import json
from collections import Counter

import aio_pika

from examples.orders.contracts import PlaceOrder
from examples.orders.summary import order_summary
from pipelines.relay import EventRelay
from pipelines.topology import EVENTS_EXCHANGE
from projections.documents import DocumentReader
from tests.conftest import eventually
from tests.locks import end_lock_session

ITEMS = [{"sku": "fig", "quantity": 1, "unitPrice": "1.00"}]
QUIET = 0.5  # seconds without a further delivery after the last expected one


async def deliveries_until(queue: aio_pika.abc.AbstractQueue, last: str) -> Counter[str]:
    """Order ids of the OrderPlaced deliveries, counted, until `last` and a quiet spell."""
    seen: Counter[str] = Counter()
    async with queue.iterator() as messages:
        while True:
            timeout = QUIET if seen[last] else 15
            try:
                message = await asyncio.wait_for(anext(messages), timeout)
            except TimeoutError:
                assert seen[last], f"order {last} never reached the events exchange"
                return seen
            async with message.process():
                seen[json.loads(message.body)["orderId"]] += 1


async def test_a_relay_whose_session_ended_steps_down(settings, orders, rpc, token, caplog) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    channel = await connection.channel(publisher_confirms=True)
    standby = EventRelay(settings, channel)  # a second instance's relay
    running = asyncio.create_task(standby.run())
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, "orders.orderplaced")
    relays = [orders.relay, standby]
    try:
        await eventually(lambda: any(r.is_leader.is_set() for r in relays), what="a leader")
        await end_lock_session(orders.runtime.pool, f"{settings.database_schema}.relay")
        await eventually(lambda: "stepped down" in caplog.text, what="the leader to step down")

        auth = token("fencing", "orders:place")
        place = PlaceOrder.model_validate({"customerId": "fencing", "items": ITEMS})
        placed = [
            (await rpc.send("orders", place, token=auth)).result()["orderId"] for _ in range(10)
        ]
        seen = await deliveries_until(queue, placed[-1])
        assert {order: seen[order] for order in placed} == {order: 1 for order in placed}
        assert sum(r.is_leader.is_set() for r in relays) == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await connection.close()


async def test_a_projection_runner_whose_session_ended_steps_down(
    settings, orders, rpc, token, caplog
) -> None:
    standby = order_summary.runner(settings, orders.runtime.pool, None)
    running = asyncio.create_task(standby.run())
    runners = [orders.runners["order_summary"], standby]
    try:
        await eventually(lambda: any(r.is_leader.is_set() for r in runners), what="a leader")
        await end_lock_session(
            orders.runtime.pool, f"{settings.database_schema}.projection.order_summary"
        )
        await eventually(
            lambda: "projection order_summary lost its connection" in caplog.text,
            what="the runner to step down",
        )
        auth = token("fencing", "orders:place")
        place = PlaceOrder.model_validate({"customerId": "fencing", "items": ITEMS})
        replies = [await rpc.send("orders", place, token=auth) for _ in range(5)]
        last = max(r.position or 0 for r in replies)
        await eventually(
            lambda: any(r.is_leader.is_set() and r.position >= last for r in runners),
            what="a runner to apply the new orders",
        )
        assert sum(r.is_leader.is_set() for r in runners) == 1
        documents = DocumentReader(orders.runtime.pool, order_summary.name)
        for reply in replies:
            assert await documents.get(reply.result()["orderId"]) is not None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
