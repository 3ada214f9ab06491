"""Observability against real receivers: traces over OTLP/HTTP (oteltap), metrics in an
Elasticsearch-API server (osmem-server), JSON log lines, `/metrics`, dashboards, `banyan status`.
"""

import asyncio
import contextlib
import io
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import yaml
from elastic_transport import HttpHeaders, Urllib3HttpNode
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import Elasticsearch
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from osmem_server import OsmemServer
from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

from examples.orders import service as orders_service
from examples.orders.contracts import OrderPlaced
from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.registry import from_services
from pipelines import Command, Context, Model, Sensitive, Service, logs
from pipelines.http import HttpServer
from pipelines.status_report import report
from pipelines.telemetry import context as telemetry_context
from pipelines.telemetry import sampling, shipping, tracing
from pipelines.telemetry.documents import FIELDS
from pipelines.telemetry.metrics import METRICS
from tests.conftest import eventually
from tests.tcp_proxy import free_port

ROOT = Path(__file__).resolve().parent.parent
ITEMS = [{"sku": "fig", "quantity": 1, "unitPrice": "2.00"}]
PASSWORD = "hunter2-" + secrets.token_hex(4)
API_KEY = "key-" + secrets.token_hex(6)
ISSUED = "issued-" + secrets.token_hex(6)
KIND = {Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
        Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer",
        Span.SPAN_KIND_INTERNAL: "internal"}  # fmt: skip


# --- a service with a sensitive field, a subscriber and an HTTP port --------------------------


class SignIn(Command):
    email: str
    password: Annotated[str, Sensitive]


class SignedIn(Model):
    user_id: str
    access_token: Annotated[str, Sensitive]


keys = Service("keys", http_port=0)
keys_log = logging.getLogger("banyan.keys")


@keys.command(SignIn, result=SignedIn)
async def sign_in(command: SignIn, ctx: Context) -> SignedIn:
    keys_log.info("sign-in attempt", extra={"attempt": command, "apiKey": API_KEY})
    return SignedIn(user_id=f"user:{command.email}", access_token=ISSUED)


@keys.on(OrderPlaced, subscriber="obsaudit")
async def audit(event: OrderPlaced, ctx: Context) -> None:
    keys_log.info("order %s placed", event.order_id)


@pytest.fixture(scope="module")
async def keys_instance(settings):
    instance = keys.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    yield instance
    await instance.stop()


@contextlib.asynccontextmanager
async def gateway(settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(update={"rate_limit_anonymous": 1000, **overrides}),
        from_services([orders_service, keys]),
    )
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        await server.stop()
        await app.state.gateway.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def place_order(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    response = await client.post(
        "/api/orders/place-order",
        json={"items": ITEMS},
        headers={**bearer(token), **headers},
    )
    assert response.status_code == 200, response.text
    return response


# --- traces ----------------------------------------------------------------------------------


@pytest.fixture
async def tap() -> AsyncIterator[tuple[str, list[Span]]]:
    """An OTLP/HTTP receiver, and every span it received so far."""
    port = free_port()
    receiver = OtelTapHttpProtobufReceiver(OtelTapHttpProtobufReceiverSettings(http_port=port))
    await receiver.start()
    spans: list[Span] = []

    async def collect() -> None:
        async for span in receiver.stream_traces():
            spans.append(span)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)  # subscribed before anything is sent
    try:
        yield f"http://127.0.0.1:{port}/v1/traces", spans
    finally:
        tracing.shutdown()  # back to the no-op tracer for the tests that follow
        collector.cancel()
        await receiver.stop()


def attributes(item: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in item.attributes}


async def spans_until(spans: list[Span], done: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            names = sorted({s.name for s in spans})
            raise AssertionError(f"spans received: {names}")
        await asyncio.to_thread(tracing.flush)
        await asyncio.sleep(0.2)


def linked_to(spans: list[Span], name: str, trace_id: str) -> list[Span]:
    return [s for s in spans if s.name == name and any(link.trace_id.hex() == trace_id
                                                       for link in s.links)]  # fmt: skip


async def test_one_request_is_one_connected_trace(settings, orders, keys_instance, token, tap):
    endpoint, spans = tap
    traceparent, trace_id, caller_span = new_traceparent()
    async with gateway(settings, jaeger_endpoint=endpoint) as client:
        placed = await place_order(
            client, token("obs-trace", "orders:place"), traceparent=traceparent,
            **{"X-Correlation-ID": "obs-trace-1"},
        )  # fmt: skip
    position = int(placed.headers["X-Event-Position"])
    mine = [s for s in spans if s.trace_id.hex() == trace_id]

    def complete() -> bool:
        mine[:] = [s for s in spans if s.trace_id.hex() == trace_id]
        return (
            {s.name for s in mine} >= {"publish reply", "process "
                                       "exchange.platform.events.obsaudit.orderplaced"}
            and bool(linked_to(spans, "publish exchange.platform.events", trace_id))
            and bool(linked_to(spans, "apply order_summary", trace_id))
        )  # fmt: skip

    await spans_until(spans, complete)
    by_name = {s.name: s for s in mine}
    chain = [
        ("POST /api/{service}/{name}", "server", None),
        ("publish service.orders.commands.PlaceOrder", "client", "POST /api/{service}/{name}"),
        ("process service.orders.commands.PlaceOrder", "consumer",
         "publish service.orders.commands.PlaceOrder"),
        ("handle PlaceOrder", "internal", "process service.orders.commands.PlaceOrder"),
        ("INSERT events", "client", "handle PlaceOrder"),
        ("publish reply", "producer", "process service.orders.commands.PlaceOrder"),
        ("process exchange.platform.events.obsaudit.orderplaced", "consumer", "handle PlaceOrder"),
    ]  # fmt: skip
    for name, kind, parent in chain:
        span = by_name[name]
        assert KIND[span.kind] == kind, name
        expected = by_name[parent].span_id if parent else bytes.fromhex(caller_span)
        assert span.parent_span_id == expected, f"{name} is not a child of {parent or 'caller'}"

    http = attributes(by_name["POST /api/{service}/{name}"])
    assert (
        http["http.response.status_code"] == 200 and http["http.route"] == "/api/{service}/{name}"
    )
    assert http["http.request.method"] == "POST" and http["network.protocol.version"] == "1.1"
    assert http["server.port"] > 0 and http["url.scheme"] == "http"
    assert http["banyan.correlation_id"] == "obs-trace-1"
    for name in ("publish service.orders.commands.PlaceOrder",
                 "process service.orders.commands.PlaceOrder"):  # fmt: skip
        found = attributes(by_name[name])
        assert found["messaging.system"] == "rabbitmq"
        assert found["messaging.destination.name"] == "service.orders.commands.PlaceOrder"
        assert found["messaging.message.conversation_id"] == "obs-trace-1"
    processed = attributes(by_name["process service.orders.commands.PlaceOrder"])
    assert processed["messaging.operation.type"] == "process"
    assert attributes(by_name["publish service.orders.commands.PlaceOrder"])[
        "messaging.operation.type"] == "send"  # fmt: skip
    append = attributes(by_name["INSERT events"])
    assert append["db.system.name"] == "postgresql" and append["db.operation.name"] == "INSERT"
    assert append["db.collection.name"] == "events"
    assert append["db.namespace"].endswith(f"|{settings.database_schema}")
    assert append["banyan.event.position"] == position
    event = attributes(by_name["process exchange.platform.events.obsaudit.orderplaced"])
    assert event["banyan.event.position"] == position

    for name in ("publish exchange.platform.events", "apply order_summary"):
        span = linked_to(spans, name, trace_id)[0]
        assert span.trace_id.hex() != trace_id  # its own trace, linked to the request's
        link = next(link for link in span.links if link.trace_id.hex() == trace_id)
        assert link.span_id == by_name["handle PlaceOrder"].span_id
        assert attributes(link)["banyan.event.position"] == position
    relay = attributes(linked_to(spans, "publish exchange.platform.events", trace_id)[0])
    assert relay["messaging.destination.name"] == "exchange.platform.events"
    assert tracing.tracer("orders").resource.attributes["service.name"] == "orders"  # type: ignore[attr-defined]


async def test_an_invalid_traceparent_is_ignored_with_a_warning(
    settings, orders, token, tap, caplog
):
    endpoint, spans = tap
    async with gateway(settings, jaeger_endpoint=endpoint) as client:
        with caplog.at_level(logging.WARNING, logger="banyan.gateway"):
            await place_order(
                client, token("obs-bad", "orders:place"), traceparent="00-nonsense-01",
                **{"X-Correlation-ID": "obs-bad-traceparent"},
            )  # fmt: skip
    assert any("invalid traceparent" in r.getMessage() for r in caplog.records)

    def server_span() -> list[Span]:
        return [s for s in spans if s.kind == Span.SPAN_KIND_SERVER and
                attributes(s).get("banyan.correlation_id") == "obs-bad-traceparent"]  # fmt: skip

    await spans_until(spans, lambda: bool(server_span()))
    root = server_span()[0]
    assert root.parent_span_id == b""  # a trace of its own
    assert any(s.name == "handle PlaceOrder" and s.trace_id == root.trace_id for s in spans)


# --- metrics in Elasticsearch ----------------------------------------------------------------


class PlainJsonNode(Urllib3HttpNode):
    """osmem-server takes plain JSON, not the client's `compatible-with` media types."""

    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        if headers:
            headers = headers.copy()
            for name in ("content-type", "accept"):
                value = headers.get(name)
                if value and "compatible-with" in value:
                    headers[name] = value.split(";")[0].replace("vnd.elasticsearch+", "")
        return super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )


class Elastic:
    """An osmem-server on a fixed port, to stop and bring back mid-test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: OsmemServer | None = None

    def start(self) -> None:
        self.server = OsmemServer.start(japanese=False, addr=f"127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def client(self) -> Elasticsearch:
        return Elasticsearch(self.url, node_class=PlainJsonNode, request_timeout=5)


@pytest.fixture
def elastic() -> Iterator[Elastic]:
    server = Elastic()
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def shipping_to(settings, elastic: Elastic, **overrides: Any) -> Iterator[shipping.MetricsShipper]:
    update = {"elasticsearch_url": elastic.url, "metrics_interval": 0.2, **overrides}
    shipper = shipping.start(settings.model_copy(update=update), client=elastic.client())
    try:
        yield shipper
    finally:
        shipping.stop()


def search(es: Elasticsearch, **terms: str) -> list[dict[str, Any]]:
    es.indices.refresh(index="banyan-metrics-*")
    query = {"bool": {"filter": [{"term": {k: v}} for k, v in terms.items()]}}
    hits = es.search(index="banyan-metrics-*", query=query, size=100)["hits"]["hits"]
    return [h["_source"] for h in hits]


async def found(es: Elasticsearch, **terms: str) -> dict[str, Any]:
    hits: list[dict[str, Any]] = []

    async def check() -> bool:
        hits[:] = await asyncio.to_thread(search, es, **terms)
        return bool(hits)

    await eventually(check, timeout=15, what=f"a metric document with {terms}")
    return hits[0]


async def test_metric_documents_arrive_in_daily_indices(settings, orders, token, elastic):
    es = elastic.client()
    with shipping_to(settings, elastic):
        async with gateway(settings) as client:
            await place_order(client, token("obs-metrics", "orders:place"))
            handled = await found(es, metric="banyan_handler_seconds", service="orders",
                                  messageType="PlaceOrder")  # fmt: skip
            requests = await found(es, metric="gateway_requests_total", service="gateway",
                                   method="POST", status="200")  # fmt: skip
    appended = await found(es, metric="banyan_events_appended_total", eventType="OrderPlaced")
    rpc = await found(es, metric="banyan_rpc_seconds", service="gateway", outcome="ok",
                      destination="service.orders.commands.PlaceOrder")  # fmt: skip
    depth = await found(es, metric="banyan_queue_depth", service="orders",
                        queue="service.orders.commands.PlaceOrder")  # fmt: skip

    assert handled["type"] == "histogram" and handled["kind"] == "command"
    assert handled["count"] >= 1 and handled["sum"] > 0
    assert 0 < handled["p50"] <= handled["p95"] <= handled["p99"]
    assert requests["type"] == "counter" and requests["value"] >= 1
    assert appended["service"] == "orders" and appended["value"] >= 1
    assert rpc["count"] >= 1 and depth["type"] == "gauge"
    for doc in (handled, requests, appended, rpc, depth):
        assert {"@timestamp", "metric", "type", "service", "process", "host", "pid"} <= doc.keys()
        assert set(doc) <= set(FIELDS), set(doc) - set(FIELDS)
    indices = es.indices.get(index="banyan-metrics-*")
    assert indices and all(re.fullmatch(r"banyan-metrics-\d{4}\.\d{2}\.\d{2}", i) for i in indices)
    mapping = next(iter(es.indices.get_mapping(index="banyan-metrics-*").values()))
    assert mapping["mappings"]["properties"]["@timestamp"]["type"] == "date"
    assert es.indices.get_index_template(name="banyan-metrics")["index_templates"]


async def hang_up_never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that accepts and never answers: Elasticsearch at its slowest."""
    with contextlib.suppress(Exception):
        await reader.read()


async def timed_orders(client: httpx.AsyncClient, token: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        await place_order(client, token)
        took.append(time.perf_counter() - started)
    return took


async def test_elasticsearch_slow_or_down_costs_no_request(settings, orders, token, elastic):
    auth = token("obs-outage", "orders:place")
    dropped_before = METRICS.registry.get_sample_value("banyan_metrics_dropped_total") or 0
    with shipping_to(settings, elastic, metrics_interval=0.1, metrics_buffer_size=30) as shipper:
        async with gateway(settings) as client:
            await timed_orders(client, auth, 3)
            await eventually(lambda: shipper.sent > 0, what="documents shipped")
            elastic.stop()  # down: connections refused
            down = await timed_orders(client, auth, 20)
            await eventually(lambda: shipper._failing, what="the shipper noticing the outage")
            slow = await asyncio.start_server(hang_up_never, "127.0.0.1", elastic.port)
            try:
                stalled = await timed_orders(client, auth, 20)  # the bulk request hangs meanwhile
            finally:
                slow.close()
            assert len(shipper.buffer) <= 30
            dropped = METRICS.registry.get_sample_value("banyan_metrics_dropped_total") or 0
            assert dropped > dropped_before
            elastic.start()  # back, empty: the template is put again and shipping resumes
            es = elastic.client()
            await found(es, metric="gateway_requests_total", service="gateway")
    assert max(down + stalled) < 2.0, f"slowest request {max(down + stalled):.2f}s"
    assert es.indices.get_index_template(name="banyan-metrics")["index_templates"]


# --- logs ------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_lines() -> Iterator[io.StringIO]:
    """Every platform log line (down to DEBUG) as the JSON a process writes."""
    stream = io.StringIO()
    handler = logs.handler(stream, text=False)
    root, platform = logging.getLogger(), logging.getLogger("banyan")
    level = platform.level
    root.addHandler(handler)
    platform.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        platform.setLevel(level)


async def test_logs_carry_the_correlation_id_and_no_secret(settings, orders, keys_instance, token):
    order_token = token("obs-logs", "orders:place", "orders:read")
    signing_in, sign_in_trace, _ = new_traceparent()
    ordering, order_trace, _ = new_traceparent()
    with captured_lines() as stream:
        async with gateway(settings) as client:
            signed = await client.post(
                "/api/keys/sign-in",
                json={"email": "ann@example.com", "password": PASSWORD},
                headers={"X-Correlation-ID": "obs-sign-in", "traceparent": signing_in},
            )
            assert signed.status_code == 200 and signed.json()["accessToken"] == ISSUED
            placed = await place_order(
                client, order_token, traceparent=ordering, **{"X-Correlation-ID": "obs-order"}
            )
            order_id = placed.json()["orderId"]
            await eventually(lambda: f"order {order_id} placed" in stream.getvalue())
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert {"timestamp", "level", "message", "service", "correlationId", "traceId",
                "spanId", "userId"} <= line.keys(), line  # fmt: skip

    for trace_id, correlation_id, services in (
        (sign_in_trace, "obs-sign-in", {"gateway", "keys"}),
        (order_trace, "obs-order", {"gateway", "orders", "keys"}),
    ):
        mine = [line for line in lines if line["traceId"] == trace_id]
        assert {line["service"] for line in mine} >= services, mine
        assert all(line["correlationId"] == correlation_id for line in mine), mine
    handled = next(line for line in lines if line["message"].startswith("PlaceOrder ok"))
    assert handled["userId"] == "obs-logs" and handled["service"] == "orders"

    attempt = next(line for line in lines if line["message"] == "sign-in attempt")
    assert attempt["attempt"] == {"email": "ann@example.com", "password": logs.REDACTED}
    assert attempt["apiKey"] == logs.REDACTED
    for secret in (PASSWORD, API_KEY, ISSUED, order_token):
        assert secret not in text


# --- /metrics, sampled gauges, status ---------------------------------------------------------


async def test_every_http_process_serves_health_and_metrics(settings, orders, keys_instance):
    assert keys_instance.http is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{keys_instance.http.port}") as c:
        assert (await c.get("/health")).json()["status"] == "ok"
        await c.get("/health")
        exposed = (await c.get("/metrics")).text
    assert "banyan_handler_seconds_bucket" in exposed
    assert "banyan_events_appended_total" in exposed
    async with gateway(settings) as client:
        await client.get("/health")
        exposed = (await client.get("/metrics")).text
    assert "gateway_requests_total" in exposed and "banyan_rpc_seconds_bucket" in exposed


async def test_queue_depth_dead_letters_and_projection_lag_are_sampled(settings, orders):
    await sampling.sample(orders)
    labels = {"service": "orders", "queue": "service.orders.commands.PlaceOrder"}
    assert METRICS.registry.get_sample_value("banyan_queue_depth", labels) is not None
    dlq = {"service": "orders", "queue": "dlq.service.orders.commands.PlaceOrder"}
    assert METRICS.registry.get_sample_value("banyan_dead_letter_depth", dlq) is not None
    if orders.runners["order_summary"].is_leader.is_set():
        lag = {"service": "orders", "projection": "order_summary"}
        assert METRICS.registry.get_sample_value("banyan_projection_lag_events", lag) is not None


async def test_status_summarises_the_platform_without_discovery(settings, orders):
    text = await report(settings)
    services, processes, queues = (text.split(title)[1] for title in
                                   ("Services (discovery)", "Processes", "Queues"))  # fmt: skip
    marker, services = services.split("\n", 1)
    assert marker.strip() == "[UNHEALTHY]" and services.strip().startswith("unavailable")
    assert "gateway" in processes
    assert "service.orders.commands.PlaceOrder" in queues or "more queue(s)" in queues
    assert "Dead letters" in text
    assert re.search(r"order_summary\s+\S+\s+position", text), text


# --- dashboards ------------------------------------------------------------------------------


def exported_metrics() -> set[str]:
    """Metric names as the documents carry them (counters with their `_total`)."""
    names = set()
    for registry in (METRICS.registry, GatewayMetrics().registry):
        for family in registry.collect():
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def query_fields(query: str) -> dict[str, str]:
    """`field:value` terms of a Lucene query string."""
    return dict(re.findall(r"([@\w.]+):(\S+)", query))


def elasticsearch_targets(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "elasticsearch":
                yield target


def test_dashboards_reference_only_fields_the_exporter_writes():
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in provisioned}
    metrics_source = next(d for d in provisioned if d["uid"] == "elasticsearch")
    assert metrics_source["jsonData"]["index"] == "banyan-metrics-*"
    assert metrics_source["jsonData"]["timeField"] in FIELDS
    boards = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert {p.stem for p in boards} >= {"platform-overview", "service-handlers", "projections",
                                        "gateway"}  # fmt: skip
    metrics = exported_metrics()
    for path in boards:
        board = json.loads(path.read_text())
        targets = list(elasticsearch_targets(board))
        assert targets, path.name
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, (path.name, panel["title"])
        for target in targets:
            fields = query_fields(target["query"])
            assert fields.get("metric") in metrics, (path.name, target["query"])
            used = {target["timeField"], *fields}
            used |= {m["field"] for m in target["metrics"] if "field" in m}
            used |= {a["field"] for a in target["bucketAggs"] if "field" in a}
            assert used <= FIELDS.keys(), (path.name, used - FIELDS.keys())
        for variable in board["templating"]["list"]:
            spec = json.loads(variable["query"])
            assert spec["field"] in FIELDS and set(query_fields(spec["query"])) <= FIELDS.keys()


def test_a_terminal_gets_readable_lines_with_the_correlation_id():
    stream = io.StringIO()
    line = logging.LogRecord("banyan.orders", logging.WARNING, "", 0, "slow %s", ("query",), None)
    handler = logs.handler(stream, text=True)
    token = telemetry_context.correlation_id.set("corr-tty")
    try:
        handler.handle(line)
    finally:
        telemetry_context.correlation_id.reset(token)
    text = stream.getvalue()
    assert "WARNING" in text and "[corr-tty] slow query" in text and not text.startswith("{")
