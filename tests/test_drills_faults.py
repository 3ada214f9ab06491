"""Faults under load: with orders flowing through the gateway, a part fails and comes back.

After each drill: every answer was a result or an error in the platform's shape (no hang);
every acknowledged order is in the log exactly once; every OrderPlaced reached the listener
service (at least once on the bus, handled once by event id); order_summary equals a fold of
the log; and no queue holds a message, ready or unacknowledged.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from examples.orders.contracts import OrderPlaced
from pipelines import headers as h
from pipelines.settings import Settings
from pipelines.topology import event_queue_name
from tests.conftest import eventually
from tests.drill_listener import POISON
from tests.drill_rig import (
    LISTENER,
    RELAY_LEADS,
    RUNNER_LEADS,
    Rig,
    assert_consistent,
    restart_postgresql,
    restart_rabbitmq,
)


@pytest.fixture(scope="module")
async def rig(settings: Settings, token: Callable[..., str]) -> AsyncIterator[Rig]:
    rig = Rig(settings, token)
    try:
        await rig.start()
        yield rig
    finally:
        await rig.close()


async def under_load(rig: Rig, name: str, fault: Callable[[], Awaitable[None]]) -> None:
    """`fault` strikes while clients keep ordering; afterwards the platform is consistent."""
    async with rig.load(name) as load:
        await load.advances(10, "before the fault")
        await fault()
        await load.advances(10, "after the recovery")
    await assert_consistent(rig, load.ledger)


async def test_orders_service_killed_and_restarted(rig: Rig) -> None:
    async def kill_and_restart() -> None:
        await rig.orders.kill()
        await rig.orders.start()

    await under_load(rig, "drill-kill-orders", kill_and_restart)


async def test_rabbitmq_restarted(rig: Rig) -> None:
    await under_load(rig, "drill-rabbitmq", restart_rabbitmq)


async def test_postgresql_restarted(rig: Rig) -> None:
    await under_load(rig, "drill-postgresql", restart_postgresql)


async def test_relay_and_projection_runner_killed_and_restarted(rig: Rig) -> None:
    """The process leading the relay and order_summary's runner dies under load; standbys
    take over; then the standalone relay dies too and the first process comes back."""
    standby = rig.child(
        "orders-standby", "-m", "faststream", "run", "examples.orders:app", RELAY_ENABLED="false"
    )
    relay = rig.child("relay", "-m", "pipelines.cli", "relay")
    # the standby serves commands and its runner waits for the lock; the relay waits for its
    # own lock, silently: its start-up may overlap the kill below
    await asyncio.gather(standby.start(), relay.start(ready=None))
    try:
        async with rig.load("drill-kill-leaders") as load:
            await load.advances(10, "before the kill")
            await rig.orders.kill()  # it leads the relay and the order_summary runner
            await relay.wait_for(RELAY_LEADS)
            await standby.wait_for(RUNNER_LEADS)
            await load.advances(10, "with the standbys leading")
            await relay.kill()  # the standalone relay too, mid-stream
            await rig.orders.start(ready=RELAY_LEADS)
            await load.advances(10, "after the restart")
        await assert_consistent(rig, load.ledger)
    finally:
        await standby.stop()
        await relay.stop()


async def test_poison_event_is_dead_lettered_then_replayed_after_the_fix(rig: Rig) -> None:
    queue = event_queue_name(LISTENER, OrderPlaced)
    dlq = f"dlq.{queue}"
    async with rig.load("drill-poison") as load:
        poisoned = await load.place(POISON)
        assert poisoned is not None, load.ledger
        await load.advances(10, "while the poison is retried")

    async def parked() -> bool:
        return len(await rig.dead_letters(dlq)) == 1

    await eventually(parked, timeout=30, what=f"the poison event in {dlq}")
    (message,) = await rig.dead_letters(dlq)
    headers = message.headers
    assert poisoned in message.body.decode()
    assert headers[h.ERROR_TYPE] == "RuntimeError"
    assert f"cannot handle order {poisoned}" in str(headers[h.ERROR_MESSAGE])
    assert headers[h.ORIGINAL_QUEUE] == queue
    assert headers[h.RETRY_COUNT] == rig.settings.retry_attempts
    listed, _ = await asyncio.gather(
        rig.cli("dlq", "list"),
        rig.listener.restart(DRILL_LISTENER_FIXED="true"),  # the fix
    )
    assert f"1  {dlq}" in listed
    assert "re-drove 1 message(s)" in await rig.cli("dlq", "replay", queue)
    await assert_consistent(rig, load.ledger)
