"""A flow's steps continue the trace of the event that started its run."""

import secrets
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from examples.inventory.contracts import AddStock
from examples.orders.contracts import PlaceOrder
from pipelines import telemetry
from pipelines.database import connect
from pipelines.telemetry import tracing
from tests.conftest import eventually


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("memory://", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


async def test_the_fulfilment_steps_continue_the_orders_trace(
    settings, orders, inventory, fulfilment, rpc, token, exported
) -> None:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    staff = token("ops-staff", "inventory:manage", "inventory:read")
    (await rpc.send("inventory", AddStock(sku=sku, quantity=5), token=staff)).result()
    trace_id = secrets.token_hex(16)
    order = PlaceOrder.model_validate({"items": [{"sku": sku, "quantity": 1, "unitPrice": "1"}]})
    with telemetry.continuing(f"00-{trace_id}-{secrets.token_hex(8)}-01"):
        placed = await rpc.send("orders", order, token=token("ops-shopper", "orders:place"))
    order_id = placed.result()["orderId"]
    conn = await connect(settings)
    try:

        async def finished() -> bool:
            done = "SELECT finished_at IS NOT NULL FROM flow_runs WHERE key = $1"
            return bool(await conn.fetchval(done, order_id))

        await eventually(finished, timeout=30, what="the fulfilment run to finish")
    finally:
        await conn.close()
    steps = [s for s in exported.get_finished_spans()
             if s.name in ("publish service.inventory.commands.ReserveStock",
                           "publish service.orders.commands.ConfirmOrder")]  # fmt: skip
    assert {s.name for s in steps} == {"publish service.inventory.commands.ReserveStock",
                                       "publish service.orders.commands.ConfirmOrder"}  # fmt: skip
    assert all(f"{s.context.trace_id:032x}" == trace_id for s in steps), [
        (s.name, f"{s.context.trace_id:032x}") for s in steps]  # fmt: skip
