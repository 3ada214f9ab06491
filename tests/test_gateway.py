"""The gateway over real HTTP, RabbitMQ, PostgreSQL and Redis."""

import asyncio
import dataclasses
import logging
import time
import uuid

import httpx
import pytest

from examples.orders import service as orders_service
from examples.orders.contracts import PlaceOrder
from gateway.app import create_app
from gateway.registry import from_services
from pipelines.http import HttpServer
from tests import sample
from tests.conftest import eventually

ITEMS = [{"sku": "lime", "quantity": 2, "unitPrice": "0.40"}]
ALL = ("orders:place", "orders:cancel", "orders:read")


async def serve(settings, **overrides):
    app = create_app(
        settings.model_copy(update=overrides), from_services([orders_service, sample.service])
    )
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    return app, server, client


async def close(app, server, client) -> None:
    await client.aclose()
    await server.stop()
    await app.state.gateway.stop()


@pytest.fixture(scope="module")
async def http(settings, orders, sample_service):
    app, server, client = await serve(settings, command_timeout=2.0, rate_limit_anonymous=1000)
    yield client
    await close(app, server, client)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_command_then_query_reads_its_own_write(http, token, orders) -> None:
    auth = bearer(token("gw-alice", *ALL))
    placed = await http.post(
        "/api/orders/place-order",
        json={"customerId": "gw-alice", "items": ITEMS},
        headers={**auth, "X-Correlation-ID": "corr-123"},
    )
    assert placed.status_code == 200, placed.text
    assert placed.headers["X-Correlation-ID"] == "corr-123"
    order_id = placed.json()["orderId"]
    position = placed.headers["X-Event-Position"]
    got = await http.get(
        "/api/orders/get-order",
        params={"orderId": order_id},
        headers={**auth, "X-Min-Position": position},
    )
    assert got.status_code == 200 and got.json()["status"] == "placed"
    again = await http.get("/api/orders/get-order", params={"orderId": order_id}, headers=auth)
    assert again.headers.get("X-Cache") == "hit" and again.json() == got.json()
    assert again.headers["X-Correlation-ID"] != "corr-123"  # generated for each request
    other = await http.post(
        "/api/orders/place-order", json={"customerId": "gw-alice", "items": ITEMS}, headers=auth
    )
    projected = int(other.headers["X-Event-Position"])
    assert await orders.runtime.positions.wait("order_summary", projected, 10)
    still = await http.get("/api/orders/get-order", params={"orderId": order_id}, headers=auth)
    assert still.headers.get("X-Cache") == "hit", "cached by order id: other orders keep it"
    listed = await http.get(
        "/api/orders/list-orders", params={"customerId": "gw-alice", "pageSize": "5"}, headers=auth
    )
    assert listed.json()["pageSize"] == 5 and listed.json()["total"] >= 1


async def test_errors_have_the_platform_shape(http, token) -> None:
    body = {"customerId": "x", "items": ITEMS}
    cases = [
        (await http.post("/api/orders/place-order", json=body), 401, "NO_AUTH_HEADER"),
        (await http.post("/api/orders/place-order", json=body, headers=bearer("nope")),
         401, "INVALID_TOKEN"),
        (await http.post("/api/orders/place-order", json=body,
                         headers=bearer(token("u", "orders:place", ttl=-10))),
         401, "TOKEN_EXPIRED"),
        (await http.post("/api/orders/place-order", json=body, headers=bearer(token("u"))),
         403, "INSUFFICIENT_PERMISSIONS"),
        (await http.post("/api/orders/place-order", json={"customerId": "x", "items": []},
                         headers=bearer(token("u", *ALL))), 400, "VALIDATION_ERROR"),
        (await http.post("/api/orders/nothing-here", json=body), 404, "NOT_FOUND"),
        (await http.post("/api/orders/place-order", content=b"{oops",
                         headers={**bearer(token("u", *ALL)), "Content-Type": "application/json"}),
         400, "VALIDATION_ERROR"),
        (await http.post("/api/orders/place-order", content=b"x" * 2_000_000,
                         headers=bearer(token("u", *ALL))), 413, "PAYLOAD_TOO_LARGE"),
    ]  # fmt: skip
    for response, status, code in cases:
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (status, code), response.text
        assert error["correlationId"] == response.headers["X-Correlation-ID"]
        assert "Traceback" not in response.text


async def test_unexpected_errors_are_500s_with_the_correlation_id(settings, orders, caplog) -> None:
    """...and each is logged once, with its traceback and the correlation id."""
    caplog.set_level(logging.ERROR, logger="banyan.gateway")
    app, server, client = await serve(settings)

    def broken(_headers: object) -> None:
        raise RuntimeError("a bug, with a secret in its message")

    app.state.gateway.auth.identify = broken
    try:
        given = await client.post(
            "/api/orders/place-order", json={}, headers={"X-Correlation-ID": "corr-500"}
        )
        made = await client.get("/api/orders/get-order", params={"orderId": "o"})
    finally:
        await close(app, server, client)
    for response in (given, made):
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (500, "INTERNAL_ERROR")
        assert error["correlationId"] == response.headers["X-Correlation-ID"]
        assert "secret" not in response.text and "Traceback" not in response.text
    assert given.headers["X-Correlation-ID"] == "corr-500"
    logged = [r for r in caplog.records if getattr(r, "correlationId", None) == "corr-500"]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].exc_info is not None and getattr(logged[0], "httpStatus", None) == 500


async def test_a_command_nothing_can_receive_fails_at_once(settings, orders, token) -> None:
    """Not waiting for publisher confirms must not turn an unroutable request into a hang."""

    async def with_ghost(rpc):
        entries = await from_services([orders_service])(rpc)
        return [*entries, dataclasses.replace(entries[0], name="ghost")]  # no queue of its own

    app = create_app(settings.model_copy(update={"command_timeout": 20.0}), with_ghost)
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    try:
        started = time.perf_counter()
        response = await client.post(
            "/api/ghost/place-order",
            json={"customerId": "ghost", "items": ITEMS},
            headers=bearer(token("ghost", *ALL)),
        )
        assert time.perf_counter() - started < 2.0
        assert (response.status_code, response.json()["error"]["code"]) == (
            503,
            "SERVICE_UNAVAILABLE",
        )
    finally:
        await close(app, server, client)


async def test_policy_and_conflict_over_http(http, token) -> None:
    owner = bearer(token("gw-owner", *ALL))
    order_id = (
        await http.post("/api/orders/place-order", json={"customerId": "gw-owner", "items": ITEMS},
                        headers=owner)
    ).json()["orderId"]  # fmt: skip
    other = await http.post(
        "/api/orders/cancel-order", json={"orderId": order_id}, headers=bearer(token("x", *ALL))
    )
    assert (other.status_code, other.json()["error"]["code"]) == (403, "POLICY_VIOLATION")
    first = await http.post("/api/orders/cancel-order", json={"orderId": order_id}, headers=owner)
    second = await http.post("/api/orders/cancel-order", json={"orderId": order_id}, headers=owner)
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert (second.status_code, second.json()["error"]["code"]) == (409, "CONFLICT")


async def test_many_requests_in_flight_at_once(http) -> None:
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(http.post("/api/sample/dawdle", json={"seconds": 0.4}) for _ in range(10))
    )
    assert all(r.status_code == 200 for r in replies)
    assert time.perf_counter() - started < 2.0  # serialized, they would take 4 s


async def test_slow_handler_times_out_with_504_that_says_how_to_retry(http) -> None:
    response = await http.post("/api/sample/dawdle", json={"seconds": 3})
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (504, "TIMEOUT")
    assert "may have been applied" in error["message"]
    key = response.headers["Idempotency-Key"]
    assert error["details"] == {"mayHaveBeenApplied": True, "idempotencyKey": key}


async def test_rate_limit_and_circuit_breaker(settings, orders, sample_service, token) -> None:
    app, server, client = await serve(settings, rate_limit_per_user=3, rate_limit_anonymous=2)
    try:
        auth = bearer(token(f"limited-{uuid.uuid4().hex}", *ALL))
        statuses = []
        for _ in range(4):
            response = await client.get("/api/orders/list-orders", headers=auth)
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        assert response.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["X-RateLimit-Limit"] == "3"
    finally:
        await close(app, server, client)
    # its own rate-limit counters: a dozen anonymous requests would count against the window
    # every later anonymous request of this run from 127.0.0.1 shares
    breaker_prefix = f"{settings.cache_prefix}:breaker"  # under the run's, dropped with it
    app, server, client = await serve(
        settings, rate_limit_anonymous=1000, cache_prefix=breaker_prefix
    )
    try:
        codes = []
        for _ in range(12):
            response = await client.post("/api/sample/explode", json={"note": "cb"})
            codes.append(response.json()["error"]["code"])
        assert codes[:10] == ["HANDLER_FAILED"] * 10
        assert codes[10:] == ["CIRCUIT_BREAKER_OPEN"] * 2
        assert response.status_code == 503
    finally:
        await close(app, server, client)


async def test_platform_endpoints(http) -> None:
    assert (await http.get("/health")).json()["status"] == "ok"
    ready = await http.get("/ready")
    assert ready.status_code == 200 and all(ready.json()["checks"].values())
    spec = (await http.get("/openapi.json")).json()
    assert "post" in spec["paths"]["/api/orders/place-order"]
    assert "/api/sample/register-service" not in spec["paths"]
    assert "swagger" in (await http.get("/api-docs")).text.lower()
    await eventually(lambda: _metric_seen(http), what="gateway_requests_total in /metrics")


async def _metric_seen(http) -> bool:
    return "gateway_requests_total" in (await http.get("/metrics")).text


async def test_development_headers_only_in_development_mode(settings, orders, caplog) -> None:
    dev = {"X-Dev-User-Id": "dev-user", "X-Dev-Permissions": "orders:place"}
    body = {"customerId": "dev-user", "items": ITEMS}
    app, server, client = await serve(settings, development_auth_enabled=True)
    try:
        placed = await client.post("/api/orders/place-order", json=body, headers=dev)
        assert placed.status_code == 200, placed.text
    finally:
        await close(app, server, client)
    app, server, client = await serve(
        settings, development_auth_enabled=True, environment="production"
    )
    try:
        refused = await client.post("/api/orders/place-order", json=body, headers=dev)
        assert refused.json()["error"]["code"] == "NO_AUTH_HEADER"
        assert any(
            r.levelname == "CRITICAL" and "DEVELOPMENT_AUTH_ENABLED" in r.getMessage()
            for r in caplog.records
        )
    finally:
        await close(app, server, client)
    app, server, client = await serve(settings)
    try:
        ignored = await client.post("/api/orders/place-order", json=body, headers=dev)
        assert ignored.status_code == 401  # off by default
    finally:
        await close(app, server, client)


async def test_a_wildcard_grants_nothing_at_the_gateway_nor_in_services(http, token, rpc) -> None:
    """There is no wildcard: `*` (which services used to hold) is refused like no permission,
    by the gateway and by the service behind it alike."""
    for caller in (token("service:fulfilment", "*"), token("nobody")):
        refused = await http.post(
            "/api/orders/place-order", json={"items": ITEMS}, headers=bearer(caller)
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["missing"] == ["orders:place"]
        direct = await rpc.send("orders", PlaceOrder.model_validate({"items": ITEMS}), token=caller)
        assert direct.error().details["missing"] == ["orders:place"]
