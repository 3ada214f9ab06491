"""A frozen Redis or broker is noticed: requests stay fast, /ready tells the truth."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from examples.orders import service as orders_service
from tests.gateway_rig import Served, running_gateway
from tests.tcp_proxy import TcpProxy, proxy_for

ITEMS = [{"sku": "kiwi", "quantity": 1, "unitPrice": "1.00"}]


@asynccontextmanager
async def proxied(settings, setting: str) -> AsyncIterator[tuple[TcpProxy, Served]]:
    """A gateway that reaches the server of `setting` (a URL) through a proxy."""
    proxy, port, through = proxy_for(getattr(settings, setting))
    await proxy.start(port)
    try:
        async with running_gateway(
            settings.model_copy(update={setting: through}), [orders_service]
        ) as served:
            yield proxy, served
    finally:
        await proxy.stop()


async def test_a_frozen_redis_costs_a_request_little(settings, orders, token) -> None:
    auth = {"Authorization": f"Bearer {token('frost', 'orders:place', 'orders:read')}"}
    async with proxied(settings, "redis_url") as (proxy, (_, client)):
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


async def test_ready_says_so_when_the_broker_is_frozen_or_refused(settings) -> None:
    async with proxied(settings, "rabbitmq_url") as (proxy, (_, client)):
        assert (await client.get("/ready")).json()["checks"]["broker"] is True
        proxy.freeze()
        started = time.perf_counter()
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] is False
        assert time.perf_counter() - started < 3.0
        await proxy.stop()  # refused from now on
        assert (await client.get("/ready")).json()["checks"]["broker"] is False
