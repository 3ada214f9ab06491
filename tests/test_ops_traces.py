"""Traces worth reading: heartbeats do not drown them, OTEL_TRACES_SAMPLER is honoured, a
failing GraphQL operation is a failed span named after it, a flow's steps continue the trace
of the event that started the run."""

import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from examples.inventory.contracts import AddStock
from examples.orders.contracts import PlaceOrder
from pipelines import telemetry
from pipelines.announce import Announcer
from pipelines.database import connect
from pipelines.registry import RegisterService
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


async def test_one_heartbeat_a_minute_is_traced(settings, rpc, exported) -> None:
    hello = RegisterService(service_name="beating", version="1.0.0", instance_id="beating-1",
                            contracts=[])  # fmt: skip
    announcer = Announcer(hello, rpc, settings, on_refused=None)  # type: ignore[arg-type]
    for _ in range(5):
        await announcer._heartbeat()  # nothing consumes them here: refused, quietly
    beats = [s for s in exported.get_finished_spans() if "Heartbeat" in s.name]
    assert len(beats) == 1, [s.name for s in exported.get_finished_spans()]


def test_otel_traces_sampler_is_honoured(monkeypatch, exported) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with tracing.tracer("sampled-out").start_as_current_span("work") as span:
        assert not span.is_recording()
    assert exported.get_finished_spans() == ()


async def test_a_failing_graphql_mutation_fails_its_span_and_is_counted(
    settings, sample_service, exported
) -> None:
    from gateway.app import create_app
    from gateway.registry import from_services
    from pipelines.http import HttpServer
    from tests import sample

    app = create_app(settings, from_services([sample.service]))
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            answer = await client.post(
                "/graphql", json={"query": 'mutation { explode(input: {note: "gql"}) }'}
            )
            exposed = (await client.get("/metrics")).text
    finally:
        await server.stop()
        await app.state.gateway.stop()
    assert answer.json()["errors"][0]["extensions"]["code"] == "HANDLER_FAILED", answer.text
    [span] = [s for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.name == "mutation explode"
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["graphql.operation.type"] == "mutation"
    assert span.attributes["http.route"] == "/graphql"
    errors = 'gateway_graphql_errors_total{code="HANDLER_FAILED",operation="mutation"} 1.0'
    assert errors in exposed, exposed


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
