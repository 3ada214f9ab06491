"""A frozen Redis or broker is noticed: requests stay fast, /ready tells the truth."""

import time

import httpx

from examples.orders import service as orders_service
from gateway.app import create_app
from gateway.registry import from_services
from pipelines.http import HttpServer
from tests.tcp_proxy import TcpProxy, proxy_for

ITEMS = [{"sku": "kiwi", "quantity": 1, "unitPrice": "1.00"}]


async def serve(settings):
    app = create_app(settings, from_services([orders_service]))
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    return app, server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)


async def proxied(url: str) -> tuple[TcpProxy, str]:
    proxy, port, through = proxy_for(url)
    await proxy.start(port)
    return proxy, through


async def test_a_frozen_redis_costs_a_request_little(settings, orders, token) -> None:
    proxy, redis_url = await proxied(settings.redis_url)
    app, server, client = await serve(settings.model_copy(update={"redis_url": redis_url}))
    auth = {"Authorization": f"Bearer {token('frost', 'orders:place', 'orders:read')}"}
    try:
        assert (await client.get("/ready")).json()["checks"]["redis"] is True
        proxy.freeze()
        started = time.perf_counter()
        placed = await client.post("/api/orders/place-order", json={"items": ITEMS}, headers=auth)
        order_id = placed.json()["orderId"]
        read = await client.get(f"/api/orders/get-order?orderId={order_id}", headers=auth)
        assert placed.status_code == 200 and read.status_code in (200, 404)
        assert time.perf_counter() - started < 2.0  # a 100 ms Redis timeout per call, not 5-10 s
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False
        assert "gateway_redis_unavailable_total 2.0" in (await client.get("/metrics")).text
    finally:
        await proxy.stop()
        await client.aclose()
        await server.stop()
        await app.state.gateway.stop()


async def test_ready_says_so_when_the_broker_is_frozen_or_refused(settings) -> None:
    proxy, rabbitmq_url = await proxied(settings.rabbitmq_url)
    app, server, client = await serve(settings.model_copy(update={"rabbitmq_url": rabbitmq_url}))
    try:
        assert (await client.get("/ready")).json()["checks"]["broker"] is True
        proxy.freeze()
        started = time.perf_counter()
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] is False
        assert time.perf_counter() - started < 3.0
        await proxy.stop()  # refused from now on
        assert (await client.get("/ready")).json()["checks"]["broker"] is False
    finally:
        await proxy.stop()
        await client.aclose()
        await server.stop()
        await app.state.gateway.stop()
