"""Start-up without a broker, and a relay that was stopped while events were appended."""

import asyncio
import contextlib
import logging
import time
from collections import Counter

from yarl import URL

from examples.orders.contracts import OrderPlaced, PlaceOrder
from pipelines import Context, Service
from pipelines.testing.isolation import drop_isolated_env
from tests import sample
from tests.conftest import eventually
from tests.tcp_proxy import TcpProxy, free_port

ITEMS = [{"sku": "fig", "quantity": 2, "unitPrice": "0.75"}]


async def test_service_waits_for_rabbitmq_with_backoff(settings, caplog) -> None:
    down = broker_down(settings, relay_enabled=False)
    instance = sample.service.instance(down)
    async with started_once_rabbitmq_appears(
        settings, down, caplog, "banyan.sample", instance.start()
    ):
        assert instance.broker.running
        await instance.stop()


async def test_gateway_waits_for_rabbitmq_with_backoff(settings, caplog) -> None:
    from gateway.app import create_app

    down = broker_down(settings)
    app = create_app(down)
    gateway = app.state.gateway
    async with started_once_rabbitmq_appears(
        settings, down, caplog, "banyan.gateway", gateway.start()
    ):
        assert gateway.rpc.connected
        await gateway.stop()


def broker_down(settings, **extra):
    """The settings with RabbitMQ on a port where nothing listens yet."""
    url = URL(settings.rabbitmq_url).with_port(free_port())
    return settings.model_copy(update={"rabbitmq_url": str(url), **extra})


@contextlib.asynccontextmanager
async def started_once_rabbitmq_appears(settings, down, caplog, logger: str, start):
    """`start` retries, saying so, until RabbitMQ appears on the port of `down`."""
    caplog.set_level(logging.WARNING, logger=logger)
    starting = asyncio.ensure_future(start)
    await eventually(
        lambda: sum("RabbitMQ unreachable" in r.getMessage() for r in caplog.records) >= 2,
        what="two logged connection retries",
    )
    assert not starting.done()
    real = URL(settings.rabbitmq_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5672)
    port = URL(down.rabbitmq_url).port
    assert port is not None  # `down` names its port
    await proxy.start(port)
    try:
        await asyncio.wait_for(starting, 15)
        yield
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


async def test_log_readers_wake_at_once_on_their_own_appends_and_skip_its_notify(
    settings, orders
) -> None:
    from pipelines.notifier import Notifier, Wakeup

    notifier = Notifier(settings)
    wakeup = Wakeup(settings, notifier)
    await notifier.start()
    conn = await orders.runtime.pool.acquire()
    try:
        await wakeup.listen(conn)
        notifier.signal()  # as an append of this process does after its commit
        assert wakeup.event.is_set()  # at once, before any NOTIFY
        wakeup.clear()
        await eventually(lambda: notifier.server_pid is not None, what="the NOTIFY to be sent")
        notify = "SELECT pg_notify($1, '')"
        await conn.execute(notify, f"{settings.database_schema}.events")  # another process's
        await asyncio.wait_for(wakeup.event.wait(), 5)
        wakeup.clear()
        notifier.signal()
        wakeup.clear()  # woken already: the NOTIFY that follows must not wake it again
        await asyncio.sleep(0.3)  # no event announces a NOTIFY that was ignored
        assert not wakeup.event.is_set()
    finally:
        await conn.reset()
        await orders.runtime.pool.release(conn)
        await notifier.stop()


async def test_a_burst_of_appends_sends_a_notify_per_gap_and_one_after_the_last(
    settings, orders
) -> None:
    """Other processes' readers need one NOTIFY per short gap, not one per append: each costs
    the appending service a round trip."""
    from pipelines.notifier import NOTIFY_GAP, Notifier, events_channel

    notifier = Notifier(settings)
    notified: list[float] = []
    conn = await orders.runtime.pool.acquire()
    await conn.add_listener(events_channel(settings), lambda *_: notified.append(time.monotonic()))
    await notifier.start()
    try:
        began = time.monotonic()
        for i in range(100):
            await asyncio.sleep(0.001 if i else 0)
            notifier.signal()
        last = time.monotonic()
        await eventually(lambda: notified and notified[-1] > last, what="a NOTIFY after the last")
        assert len(notified) <= (last - began) / NOTIFY_GAP + 2, (len(notified), last - began)
    finally:
        await notifier.stop()
        await conn.reset()
        await orders.runtime.pool.release(conn)


async def test_processes_migrating_a_new_schema_at_once_all_start(settings) -> None:
    from pipelines.database import migrate, migration_files

    schema = f"{settings.database_schema}_fresh"
    fresh = settings.model_copy(update={"database_schema": schema})
    try:
        applied = await asyncio.gather(*(migrate(fresh) for _ in range(4)))
    finally:
        await drop_isolated_env({"DATABASE_SCHEMA": schema})
    assert sorted(map(len, applied)) == [0, 0, 0, len(migration_files())]  # one applied them
