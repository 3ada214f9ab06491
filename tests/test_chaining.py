"""An event handler sending a command to another service: ids chained across the hops."""

import uuid

from examples.orders.contracts import OrderPlaced, PlaceOrder
from pipelines import Caller, Context, Service
from pipelines.idempotency import record_id
from tests import sample
from tests.conftest import eventually

ITEMS = [{"sku": "yuzu", "quantity": 1, "unitPrice": "9.00"}]


async def test_command_event_command_event_share_one_correlation(
    settings, orders, sample_service, rpc, token
) -> None:
    counters = Service("counting", calls=[sample.Increment])

    @counters.on(OrderPlaced)
    async def count_order(event: OrderPlaced, ctx: Context) -> None:
        reply = await ctx.send(
            "sample", sample.Increment(counter_id=event.order_id), key=f"count:{event.order_id}"
        )
        reply.result()

    instance = counters.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    try:
        correlation = uuid.uuid4().hex
        placed = await rpc.send(
            "orders",
            PlaceOrder.model_validate({"customerId": "chain", "items": ITEMS}),
            token=token("chain", "orders:place"),
            **{"x-correlation-id": correlation},
        )
        order_id = placed.result()["orderId"]
        pool = orders.runtime.pool
        await eventually(
            lambda: pool.fetchval("SELECT 1 FROM events WHERE aggregate_id = $1 AND "
                                  "event_type = 'Counted'", order_id),
            what="the Counted event of the chained command",
        )  # fmt: skip
        rows = await pool.fetch(
            "SELECT event_id, event_type, correlation_id, causation_id FROM events "
            "WHERE correlation_id = $1 ORDER BY position",
            correlation,
        )
        assert [r["event_type"] for r in rows] == ["OrderPlaced", "Counted"]
        placed_event, counted = rows
        assert counted["causation_id"] == f"count:{order_id}"  # the chained command's id
        sent_by = Caller("service:counting")  # as an event handler sends: as its service
        command = await pool.fetchrow(
            "SELECT message_type FROM command_results WHERE command_id = $1",
            record_id(f"count:{order_id}", "sample", "Increment", sent_by),
        )
        assert command["message_type"] == "Increment"
        assert sample.causes[order_id] == str(placed_event["event_id"])  # the event caused it
    finally:
        await instance.stop()
