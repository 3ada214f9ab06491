"""Discovery, a service and the gateway together: routes follow the registry, no restarts."""

import httpx

from discovery import service as discovery_service
from examples.orders import service as orders_service
from gateway.app import create_app
from pipelines.http import HttpServer
from tests.conftest import eventually
from tests.tcp_proxy import free_port

ITEMS = [{"sku": "kiwi", "quantity": 1, "unitPrice": "0.50"}]


def announcing(settings, **extra):
    return settings.model_copy(update={
        "announce_enabled": True, "heartbeat_interval": 0.5, "relay_enabled": False,
        "database_pool_size": 3, **extra,
    })  # fmt: skip


async def test_a_service_started_after_the_gateway_is_routed_and_leaves_cleanly(
    settings, token
) -> None:
    discovery = discovery_service.instance(
        announcing(settings, discovery_port=free_port(), relay_enabled=True)
    )
    await discovery.start()
    app = create_app(settings.model_copy(update={"rate_limit_anonymous": 1000}))
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    auth = {"Authorization": f"Bearer {token('platform', 'orders:place')}"}
    body = {"customerId": "platform", "items": ITEMS}
    orders = orders_service.instance(announcing(settings))
    try:
        before = await http.post("/api/orders/place-order", json=body, headers=auth)
        assert before.status_code in (404, 503)  # unknown, or known without a live instance

        await orders.start()  # announces itself; discovery tells the gateway

        async def routed() -> bool:
            response = await http.post("/api/orders/place-order", json=body, headers=auth)
            return response.status_code == 200

        await eventually(routed, timeout=15, what="the gateway to route orders")
        assert "/api/orders/place-order" in (await http.get("/openapi.json")).json()["paths"]

        await orders.stop()  # deregisters: no stale route

        async def gone() -> bool:
            response = await http.post("/api/orders/place-order", json=body, headers=auth)
            return response.status_code in (404, 503)

        await eventually(gone, timeout=15, what="the route to go with the service")
    finally:
        await http.aclose()
        await server.stop()
        await app.state.gateway.stop()
        await discovery.stop()
