"""Start-up without a broker, and a relay that was stopped while events were appended."""

import asyncio
import logging
from collections import Counter

from yarl import URL

from examples.orders.contracts import OrderPlaced, PlaceOrder
from pipelines import Context, Service
from tests import sample
from tests.conftest import eventually
from tests.tcp_proxy import TcpProxy, free_port

ITEMS = [{"sku": "fig", "quantity": 2, "unitPrice": "0.75"}]


async def test_service_waits_for_rabbitmq_with_backoff(settings, caplog) -> None:
    real = URL(settings.rabbitmq_url)
    port = free_port()
    down = settings.model_copy(
        update={
            "rabbitmq_url": str(real.with_port(port)),
            "relay_enabled": False,
        }
    )
    instance = sample.service.instance(down)
    caplog.set_level(logging.WARNING, logger="banyan.sample")
    starting = asyncio.create_task(instance.start())
    await eventually(
        lambda: sum("RabbitMQ unreachable" in r.getMessage() for r in caplog.records) >= 2,
        what="two logged connection retries",
    )
    assert not starting.done()
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5672)
    await proxy.start(port)
    try:
        await asyncio.wait_for(starting, 15)
        assert instance.broker.running
        await instance.stop()
    finally:
        await proxy.stop()


async def test_relay_restart_publishes_every_missed_event_once(
    settings, orders, rpc, token
) -> None:
    seen: Counter[str] = Counter()
    listeners = Service("relay-listeners")

    @listeners.on(OrderPlaced)
    async def count(event: OrderPlaced, ctx: Context) -> None:
        seen[event.order_id] += 1

    instance = listeners.instance(
        settings.model_copy(
            update={
                "relay_enabled": False,
                "event_prefetch_count": 1,  # in order: a sentinel ends the test
            }
        )
    )
    await instance.start()
    auth = token("relay", "orders:place")
    place = PlaceOrder.model_validate({"customerId": "relay", "items": ITEMS})
    try:
        await orders._stop_background()
        placed = [
            (await rpc.send("orders", place, token=auth)).result()["orderId"] for _ in range(20)
        ]
        # as if the relay had published 5 more events and crashed before its checkpoint
        await orders.runtime.pool.execute(
            "UPDATE relay_positions SET position = greatest(position - 5, 0)"
        )
        await orders._start_background()
        sentinel = (await rpc.send("orders", place, token=auth)).result()["orderId"]
        await eventually(lambda: seen[sentinel] == 1, what="the sentinel event")
        assert {order: seen[order] for order in placed} == {order: 1 for order in placed}
    finally:
        await instance.stop()
