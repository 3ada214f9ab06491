import asyncio

import pytest

from examples.orders.contracts import CancelOrder, OrderPlaced, PlaceOrder
from pipelines import Context, Service
from pipelines.errors import Conflict, Forbidden, NotFound, PolicyViolation
from pipelines.rpc import RpcClient

PLACE = ("orders:place",)
ITEMS = [{"sku": "apple", "quantity": 3, "unitPrice": "1.50"}]


def place(customer: str = "alice") -> PlaceOrder:
    return PlaceOrder.model_validate({"customerId": customer, "items": ITEMS})


async def test_place_order_replies_with_result_and_position(orders, rpc: RpcClient, token) -> None:
    response = await rpc.send("orders", place(), token=token("alice", *PLACE))
    body = response.result()
    assert set(body) == {"orderId"}
    assert response.position is not None and response.position > 0
    row = await orders.runtime.pool.fetchrow(
        "SELECT event_type, aggregate_id, data, correlation_id FROM events WHERE position = $1",
        response.position,
    )
    assert row["event_type"] == "OrderPlaced"
    assert row["aggregate_id"] == body["orderId"]
    assert row["data"]["total"] == "4.50"
    assert row["correlation_id"] == response.headers["x-correlation-id"]


async def test_large_messages_travel_compressed(orders, rpc, token) -> None:
    items = [{"sku": f"sku-{i:04}", "quantity": 1, "unitPrice": "0.10"} for i in range(200)]
    command = PlaceOrder.model_validate({"customerId": "bulk", "items": items})
    assert len(command.to_json()) > 1024
    response = await rpc.send("orders", command, token=token("bulk", *PLACE))
    data = await orders.runtime.pool.fetchval(
        "SELECT data FROM events WHERE position = $1", response.position
    )
    assert len(data["items"]) == 200 and data["total"] == "20.00"


async def test_events_reach_every_subscriber(settings, orders, rpc, token) -> None:
    listeners = Service("listeners")
    seen: dict[str, asyncio.Queue[OrderPlaced]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}

    @listeners.on(OrderPlaced, subscriber="listener-a")
    async def on_a(event: OrderPlaced, ctx: Context) -> None:
        await seen["a"].put(event)

    @listeners.on(OrderPlaced, subscriber="listener-b")
    async def on_b(event: OrderPlaced, ctx: Context) -> None:
        assert ctx.event is not None and ctx.event.position > 0
        await seen["b"].put(event)

    instance = listeners.instance(settings)
    await instance.start()
    try:
        order_id = (await rpc.send("orders", place("bob"), token=token("bob", *PLACE))).result()[
            "orderId"
        ]
        for name in "ab":
            while (event := await asyncio.wait_for(seen[name].get(), 10)).order_id != order_id:
                pass
            assert event.customer_id == "bob"
    finally:
        await instance.stop()


async def test_permissions_and_policy_and_conflict(orders, rpc, token) -> None:
    with pytest.raises(Forbidden):
        (await rpc.send("orders", place())).result()
    order_id = (await rpc.send("orders", place("carol"), token=token("carol", *PLACE))).result()[
        "orderId"
    ]
    cancel = CancelOrder(order_id=order_id)
    with pytest.raises(PolicyViolation):
        (await rpc.send("orders", cancel, token=token("mallory", "orders:cancel"))).result()
    ok = await rpc.send("orders", cancel, token=token("carol", "orders:cancel"))
    assert ok.result() == {"orderId": order_id, "status": "cancelled"}
    with pytest.raises(Conflict):
        (await rpc.send("orders", cancel, token=token("carol", "orders:cancel"))).result()
    admin = token("root", "orders:cancel", "orders:admin")
    with pytest.raises(NotFound):
        (await rpc.send("orders", CancelOrder(order_id="nope"), token=admin)).result()
