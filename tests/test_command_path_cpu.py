"""What the command path does per message, and must not: costs that showed in the orders
service's CPU per command against a hand-written service (bench.gateway, 64 clients)."""

from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from aio_pika.exchange import Exchange
from fast_depends.core.model import CallModel
from faststream._internal.endpoint.subscriber.usecase import SubscriberUsecase

from examples.orders.contracts import OrderLine, OrderPlaced, PlaceOrder
from examples.orders.domain import Order
from pipelines import headers as h
from pipelines.publishing import json_properties
from pipelines.rpc import RpcClient
from pipelines.topology import REPLY_TO, request_queue_name

ITEMS = [{"sku": "apple", "quantity": 3, "unitPrice": "1.50"}]


async def test_a_command_reaches_its_processor_without_dependency_injection(
    orders, rpc: RpcClient, token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processors take the delivery as it is: FastDepends would solve the consumer's
    signature again for every message."""
    solved = 0
    real = CallModel.asolve

    async def counting(self: CallModel, *args: Any, **kwargs: Any) -> Any:
        nonlocal solved
        solved += 1
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(CallModel, "asolve", counting)
    command = PlaceOrder.model_validate({"customerId": "alice", "items": ITEMS})
    response = await rpc.send("orders", command, token=token("alice", "orders:place"))
    assert response.ok and response.position is not None
    assert solved == 0


async def test_a_delivery_goes_to_its_processor_directly(
    orders, rpc: RpcClient, token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not through FastStream's per-message pipeline (context scopes, middlewares, parser):
    the processor decodes, checks, logs and acknowledges each message itself."""
    piped = 0
    real = SubscriberUsecase.process_message

    async def counting(self: SubscriberUsecase[Any], msg: Any) -> Any:
        nonlocal piped
        piped += 1
        return await real(self, msg)

    monkeypatch.setattr(SubscriberUsecase, "process_message", counting)
    command = PlaceOrder.model_validate({"customerId": "alice", "items": ITEMS})
    response = await rpc.send("orders", command, token=token("alice", "orders:place"))
    assert response.ok and response.position is not None
    assert piped == 0


def test_recording_and_taking_events_skip_pydantics_attribute_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fallbacks: list[str] = []
    real = Order.__getattr__  # type: ignore[attr-defined]  # pydantic defines it at run time

    def counting(self: Order, name: str) -> Any:
        fallbacks.append(name)
        return real(self, name)

    monkeypatch.setattr(Order, "__getattr__", counting)
    order = Order(id="o-1")
    line = OrderLine(sku="apple", quantity=1, unit_price=Decimal(1))
    placed = OrderPlaced(order_id="o-1", customer_id="alice", items=[line], total=Decimal(1))
    order.record(placed)
    assert order.pending == [placed]
    assert order.take_pending() == [placed]
    assert order.take_pending() == [] and order.status == "placed" and order.version == 1
    assert fallbacks == []


async def test_requests_and_replies_are_published_without_an_aio_pika_message(
    orders, rpc: RpcClient, token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their properties are built directly: the same frames, less CPU per request."""
    through_exchange: list[str] = []
    real = Exchange.publish

    async def recording(self: Exchange, message: Any, routing_key: str, **kw: Any) -> Any:
        if routing_key in (queue, REPLY_TO) or routing_key.startswith(f"{REPLY_TO}."):
            through_exchange.append(routing_key)  # not the relay's events
        return await real(self, message, routing_key, **kw)

    queue = request_queue_name("orders", PlaceOrder)
    monkeypatch.setattr(Exchange, "publish", recording)
    command = PlaceOrder.model_validate({"customerId": "alice", "items": ITEMS})
    response = await rpc.send("orders", command, token=token("alice", "orders:place"))
    assert response.ok and response.headers[h.SERVICE_NAME] == "orders"
    assert response.headers[h.EVENT_POSITION] == response.position
    assert through_exchange == []


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_replys_properties_are_those_of_an_aio_pika_message(encoding: str | None) -> None:
    headers: dict[str, Any] = {h.STATUS: "ok", h.RETRY_COUNT: 0, h.EVENT_POSITION: 42}
    ours = json_properties(headers, encoding, "corr-1")
    theirs = aio_pika.Message(
        b"{}",
        headers=headers,
        content_encoding=encoding,
        correlation_id="corr-1",
        content_type="application/json",
    ).properties
    assert ours.marshal() == theirs.marshal()


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_requests_properties_are_those_of_an_aio_pika_message(encoding: str | None) -> None:
    headers: dict[str, Any] = {h.CORRELATION_ID: "c", h.RETRY_COUNT: 0, h.USER_TOKEN: "t"}
    ours = json_properties(
        headers, encoding, "k", reply_to=REPLY_TO, message_id="m", persistent=True
    )
    theirs = aio_pika.Message(
        b"{}",
        headers=headers,
        correlation_id="k",
        reply_to=REPLY_TO,
        message_id="m",
        content_type="application/json",
        content_encoding=encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    ).properties
    assert ours.marshal() == theirs.marshal()
