"""Readers are tolerant, so two versions of a contract run side by side: fields a class does not
know are ignored when it reads; the gateway still refuses a field that no version has."""

import uuid

from examples.orders import service as orders_service
from examples.orders.contracts import PlaceOrder
from pipelines import Context, Event, Service
from tests.conftest import eventually
from tests.gateway_rig import running_gateway

ITEMS = [{"sku": "yam", "quantity": 1, "unitPrice": "1.00"}]


class OrderPlaced(Event, service="orders"):
    """A consumer's cut-down copy of the orders service's event: the one field it needs."""

    order_id: str


consumer = Service("cut-down-consumer")
seen: set[str] = set()


@consumer.on(OrderPlaced)
async def note(event: OrderPlaced, ctx: Context) -> None:
    seen.add(event.order_id)


async def test_a_cut_down_copy_of_an_event_reads_the_real_one(settings, orders, rpc, token):
    instance = consumer.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    try:
        auth = token("tolerant", "orders:place")
        place = PlaceOrder.model_validate({"items": ITEMS})
        order_id = (await rpc.send("orders", place, token=auth)).result()["orderId"]
        await eventually(lambda: order_id in seen, what="the cut-down consumer to handle it")
    finally:
        await instance.stop()


async def test_a_command_with_a_newer_versions_optional_field_is_handled(orders, rpc, token):
    """A v1.0 instance during a rolling deploy, sent what v1.1's schema allows."""
    body = b'{"items": [{"sku": "yam", "quantity": 1, "unitPrice": "1.00", "giftWrap": true}],'
    body += b' "deliveryNote": "leave at the door"}'
    reply = await rpc.request(
        "service.orders.commands.PlaceOrder",
        body,
        headers={"x-user-token": token("tolerant", "orders:place")},
    )
    assert reply.ok, reply.json()
    assert uuid.UUID(reply.json()["orderId"])


async def test_the_gateway_refuses_a_field_no_version_has(settings, orders, token) -> None:
    async with running_gateway(settings, [orders_service]) as (_, client):
        answer = await client.post(
            "/api/orders/place-order",
            json={"items": ITEMS, "custmerId": "typo"},
            headers={"Authorization": f"Bearer {token('tolerant', 'orders:place')}"},
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
