"""The bus carries only what the log holds: an event published with the broker login alone, or
a genuine one altered or sent under another routing key, is dead-lettered with the reason and
counted, and reaches no subscriber, flow or client socket."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from websockets.asyncio.client import connect

from examples.orders import service as orders_service
from examples.orders.contracts import (
    CancelOrder,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    PlaceOrder,
)
from pipelines import deadletters
from pipelines import headers as h
from pipelines.event_signing import FORGERIES, WHY, EventSignatures
from pipelines.messages import Incoming
from pipelines.telemetry.metrics import METRICS
from pipelines.topology import EVENTS_EXCHANGE, dead_letter_queue_name
from tests.conftest import FULFILMENT_TRIGGERS, eventually
from tests.gateway_rig import running_gateway
from tests.test_flows import Shop  # importing it also makes the engines tick fast
from tests.test_gateway import ALL
from tests.test_gateway_graphql import PlainWS, place_order

PLACED_QUEUE, CANCELLED_QUEUE = FULFILMENT_TRIGGERS
WAIT = 30.0
Message = tuple[bytes, dict[str, Any], str | None]  # body, headers, content encoding


@pytest.fixture
def shop(orders, rpc, token) -> Shop:
    return Shop(rpc, token, orders.runtime.pool)


def as_relayed(event: OrderPlaced | OrderCancelled) -> Message:
    """`event` with the headers the relay would give it, unsigned: what a broker login makes."""
    event_id = str(uuid.uuid4())
    headers = {
        h.EVENT_ID: event_id,
        h.MESSAGE_TYPE: event.message_type(),
        h.SERVICE_NAME: "orders",
        h.AGGREGATE_TYPE: "Order",
        h.AGGREGATE_ID: event.order_id,
        h.EVENT_VERSION: 2,
        h.GLOBAL_POSITION: 1,
        h.OCCURRED_AT: datetime.now(UTC).isoformat(),
        h.CORRELATION_ID: event_id,
        h.CAUSATION_ID: event_id,
        h.SCHEMA_VERSION: 1,
    }
    return event.to_json(), headers, None


def signed_with(key: str, message: Message) -> Message:
    body, headers, encoding = message
    signature = EventSignatures(key).sign(headers, body, encoding)
    return body, {**headers, h.EVENT_SIGNATURE: signature}, encoding


async def publish(settings, routing_key: str, message: Message) -> None:
    """Publish on the events exchange with the broker login, confirmed (so routed) on return."""
    body, headers, encoding = message
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(body, headers=headers, content_encoding=encoding),
            routing_key=routing_key,
        )


@pytest.fixture
async def channel(settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        yield await connection.channel()


async def emptied_dead_letters(channel: aio_pika.abc.AbstractChannel, queue: str) -> AbstractQueue:
    dlq = await channel.declare_queue(dead_letter_queue_name(queue), durable=True, passive=True)
    await dlq.purge()
    return dlq


async def taken(queue: AbstractQueue, count: int) -> list[AbstractIncomingMessage]:
    """The next `count` messages of `queue`, acknowledged, or a failure after WAIT seconds."""
    messages: list[AbstractIncomingMessage] = []

    async def take() -> None:
        async with queue.iterator() as arriving:
            async for message in arriving:
                await message.ack()
                messages.append(message)
                if len(messages) == count:
                    return

    try:
        await asyncio.wait_for(take(), WAIT)
    except TimeoutError:
        pytest.fail(f"{len(messages)} of {count} messages reached {queue.name} within {WAIT}s")
    return messages


def forged(service: str, reason: str) -> float:
    labels = {"service": service, "reason": reason}
    return METRICS.registry.get_sample_value("banyan_forged_events_total", labels) or 0.0


def handler_errors(service: str) -> float:
    return sum(
        s.value
        for metric in METRICS.handler_errors.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels["service"] == service
    )


async def held(shop: Shop, sku: str) -> tuple[int, int]:
    stock = await shop.stock(sku)
    return stock["available"], stock["reserved"]


async def runs_of(shop: Shop, order: str) -> list[str]:
    rows = await shop.pool.fetch("SELECT id FROM flow_runs WHERE key = $1 ORDER BY id", order)
    return [r["id"] for r in rows]


async def test_cancellations_the_log_did_not_sign_release_no_stock(
    settings, shop, inventory, fulfilment, channel
) -> None:
    dead_letters = await emptied_dead_letters(channel, CANCELLED_QUEUE)
    overheard = await channel.declare_queue(exclusive=True)  # what a broker login can read
    await overheard.bind(EVENTS_EXCHANGE, "orders.orderplaced")
    apples = await shop.sku(10)
    order = await shop.place((apples, 4))
    await eventually(lambda: shop.finished(order), what="the order's fulfilment")
    assert await held(shop, apples) == (6, 4)
    (placed,) = await taken(overheard, 1)
    assert order.encode() in Incoming.from_raw(placed).body
    genuine = placed.body, dict(placed.headers), placed.content_encoding
    line = OrderLine(sku=apples, quantity=4, unit_price=Decimal("1"))
    cancelled = as_relayed(OrderCancelled(order_id=order, customer_id="shopper", items=[line]))
    relabelled = genuine[0], {**genuine[1], h.MESSAGE_TYPE: "OrderCancelled"}, genuine[2]
    before = {reason: forged("fulfilment", reason) for reason in FORGERIES}
    errors_before = handler_errors("fulfilment")

    for message in (
        cancelled,  # the broker login alone
        signed_with("a key of the attacker's own, 32 bytes long", cancelled),
        relabelled,  # the log's OrderPlaced, its type changed
        genuine,  # the log's OrderPlaced as it is, routed as a cancellation
    ):
        await publish(settings, "orders.ordercancelled", message)

    letters = await taken(dead_letters, 4)
    assert [m.headers[h.ERROR_TYPE] for m in letters] == ["ForgedEvent"] * 4
    reasons = sorted(str(m.headers[h.ERROR_MESSAGE]) for m in letters)
    assert reasons == [
        f"refused as forged ({reason}): {WHY[reason]}"
        for reason in ("bad_signature", "bad_signature", "misrouted", "unsigned")
    ]
    counted = {reason: forged("fulfilment", reason) - n for reason, n in before.items()}
    assert counted == {"unsigned": 1, "bad_signature": 2, "misrouted": 1}
    assert await runs_of(shop, order) == [f"order-fulfilment:{order}"]  # no release started
    assert await held(shop, apples) == (6, 4)
    assert handler_errors("fulfilment") == errors_before
    assert (await fulfilment.health())["status"] == "ok"


async def test_a_forged_order_placed_starts_no_flow_and_reaches_no_socket(
    settings, orders, inventory, fulfilment, channel, token
) -> None:
    dead_letters = await emptied_dead_letters(channel, PLACED_QUEUE)
    customer = f"ws-{uuid.uuid4().hex}"
    fake = f"fake-{uuid.uuid4().hex}"
    line = OrderLine(sku="lime", quantity=1, unit_price=Decimal("1"))
    forgery = as_relayed(
        OrderPlaced(order_id=fake, customer_id=customer, items=[line], total=Decimal("1"))
    )
    gateway_before = forged("gateway", "unsigned")
    async with running_gateway(settings, [orders_service]) as (_, http):
        address = f"ws://{http.base_url.host}:{http.base_url.port}/ws"
        async with connect(f"{address}?token={token(customer, *ALL)}") as socket:
            client = PlainWS(socket)
            subscribed = await client.ask({"type": "subscribe", "eventType": "OrderPlaced"})
            assert subscribed["type"] == "subscribed", subscribed
            await publish(settings, "orders.orderplaced", forgery)
            real, _ = await place_order(http, token(customer, *ALL), customer)
            first = await client.receive()  # the forgery, had it been passed on
            assert first["data"]["orderId"] == real
    assert forged("gateway", "unsigned") == gateway_before + 1
    (letter,) = await taken(dead_letters, 1)
    assert letter.headers[h.AGGREGATE_ID] == fake
    assert letter.headers[h.ERROR_TYPE] == "ForgedEvent"
    assert (
        await orders.runtime.pool.fetchval("SELECT count(*) FROM flow_runs WHERE key = $1", fake)
        == 0
    )


def test_any_change_to_a_signed_event_breaks_its_signature() -> None:
    signatures = EventSignatures("k" * 32)
    body, headers, _ = as_relayed(OrderCancelled(order_id="o-1", customer_id="c-1"))
    signed = {**headers, h.EVENT_SIGNATURE: signatures.sign(headers, body, "gzip")}
    assert signatures.forgery(signed, body, "gzip", "OrderCancelled") is None
    assert signatures.forgery(signed, body, None) == "bad_signature"
    assert signatures.forgery(signed, body + b" ", "gzip") == "bad_signature"
    for name in headers:
        changed = {**signed, name: f"{headers[name]}0"}
        assert signatures.forgery(changed, body, "gzip") == "bad_signature", name
    assert signatures.forgery(signed, body, "gzip", "OrderPlaced") == "misrouted"
    assert signatures.forgery(headers, body, "gzip") == "unsigned"
    assert signatures.forgery({**signed, h.EVENT_SIGNATURE: "é"}, body, "gzip") == "bad_signature"
    other = EventSignatures("o" * 32)
    assert other.forgery(signed, body, "gzip") == "bad_signature"


async def test_replaying_refused_events_sends_only_what_the_log_holds(
    settings, orders, rpc, token, channel
) -> None:
    """A subscriber refused the unsigned copy an older relay published: the log's copy replaces
    it on replay; what the log does not hold for that queue stays dead-lettered."""
    customer = token("shopper", "orders:place", "orders:cancel")
    placed = PlaceOrder.model_validate({"items": [{"sku": "pear", "quantity": 1, "unitPrice": 1}]})
    order = (await rpc.send("orders", placed, token=customer)).result()["orderId"]
    (await rpc.send("orders", CancelOrder(order_id=order), token=customer)).result()
    logged = dict(
        await orders.runtime.pool.fetch(
            "SELECT event_type, event_id::text FROM events WHERE aggregate_id = $1", order
        )
    )
    queue_name = f"exchange.platform.events.audit-{uuid.uuid4().hex}.orderplaced"
    queue = await channel.declare_queue(queue_name)
    dlq = await channel.declare_queue(dead_letter_queue_name(queue_name))
    letters = {
        "unsigned copy": logged["OrderPlaced"],
        "unknown to the log": str(uuid.uuid4()),
        "another type's": logged["OrderCancelled"],
    }
    for event_id in letters.values():
        body, headers, _ = as_relayed(
            OrderPlaced(order_id=order, customer_id="x", items=[], total=Decimal("0"))
        )
        headers.update({h.EVENT_ID: event_id, h.ERROR_TYPE: "ForgedEvent"})
        await channel.default_exchange.publish(aio_pika.Message(body, headers=headers), dlq.name)

    assert await deadletters.replay(settings, queue_name) == 1

    redriven = await queue.get()
    assert redriven.headers[h.EVENT_ID] == logged["OrderPlaced"]
    assert order.encode() in Incoming.from_raw(redriven).body
    signatures = EventSignatures.of(settings)
    assert (
        signatures.forgery(
            redriven.headers, redriven.body, redriven.content_encoding, "OrderPlaced"
        )
        is None
    )
    kept = [(await dlq.get()).headers[h.EVENT_ID] for _ in range(2)]
    assert kept == [letters["unknown to the log"], letters["another type's"]]
    await queue.delete()
    await dlq.delete()
