"""What the command path does per message, and must not: costs that showed in the orders
service's CPU per command against a hand-written service (bench.gateway, 64 clients)."""

from decimal import Decimal
from typing import Any

import pytest
from fast_depends.core.model import CallModel

from examples.orders.contracts import OrderLine, OrderPlaced, PlaceOrder
from examples.orders.domain import Order
from pipelines.rpc import RpcClient

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
