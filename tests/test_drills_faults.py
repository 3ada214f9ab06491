"""Faults under load: with orders flowing through the gateway, a part fails and comes back.

After each drill: every answer was a result or an error in the platform's shape (no hang);
every acknowledged order is in the log exactly once; every OrderPlaced reached the listener
service (at least once on the bus, handled once by event id); order_summary equals a fold of
the log; and no queue holds a message, ready or unacknowledged.
"""

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from yarl import URL

from examples.orders.contracts import OrderPlaced, PlaceOrder
from pipelines import headers as h
from pipelines.database import connect
from pipelines.eventstore import EventStore, NewEvent
from pipelines.settings import Settings
from pipelines.topology import (
    EVENTS_EXCHANGE,
    event_binding_key,
    event_queue_name,
    request_queue_name,
)
from tests.conftest import eventually
from tests.drill_listener import POISON
from tests.drill_rig import (
    APPEND_STALL_TIMEOUT,
    LISTENER,
    RELAY_LEADS,
    RUNNER_LEADS,
    Child,
    Load,
    Rig,
    assert_consistent,
    restart_postgresql,
    restart_rabbitmq,
)
from tests.locks import end_lock_session

pytestmark = pytest.mark.drill

FROZEN_REDIS_LATENCY = 1.0  # seconds: the slowest answer while Redis is frozen (calls: 100 ms)


@pytest.fixture(scope="module")
async def rig(settings: Settings, token: Callable[..., str]) -> AsyncIterator[Rig]:
    rig = Rig(settings, token)
    try:
        await rig.start()
        yield rig
    finally:
        await rig.close()


@contextlib.asynccontextmanager
async def under_load(rig: Rig, name: str) -> AsyncIterator[Load]:
    """The body (the fault) runs while clients keep ordering; afterwards the platform is
    consistent."""
    async with rig.load(name) as load:
        await load.advances(10, "before the fault")
        yield load
        await load.advances(10, "after the recovery")
    await assert_consistent(rig, load.ledger)


async def test_orders_service_killed_and_restarted(rig: Rig) -> None:
    async with under_load(rig, "drill-kill-orders"):
        await rig.orders.kill()
        await rig.orders.start()


async def test_rabbitmq_restarted(rig: Rig) -> None:
    async with under_load(rig, "drill-rabbitmq"):
        await restart_rabbitmq()


async def test_postgresql_restarted(rig: Rig) -> None:
    async with under_load(rig, "drill-postgresql"):
        await restart_postgresql()


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


async def test_relay_leaders_session_terminated(rig: Rig) -> None:
    """An admin ends the session holding the relay's lock while a standby relay polls for it:
    the old leader steps down and every event visible only after that session was gone (it
    could not have read them) reaches a subscriber queue exactly once; an event of the batch
    in flight at the kill may come twice (the new leader republishes from the checkpoint)."""
    standby = await standby_relay(rig)
    try:
        async with (
            deliveries(rig, event_binding_key(OrderPlaced)) as seen,
            under_load(rig, "drill-relay-session"),
        ):
            since = len(rig.orders.lines)
            await terminate_relay_session(rig)
            end_at_kill = await rig.fetchval("SELECT max(position) FROM events")
            await rig.orders.wait_for("stepped down", since)  # the rig's process led the relay
        later = await rig.fetchval(
            "SELECT array_agg(event_id::text) FROM events "
            "WHERE event_type = 'OrderPlaced' AND position > $1",
            end_at_kill,
        )
        assert later, "no order placed after the kill"
        not_once = {event: seen[event] for event in later if seen[event] != 1}
        assert not not_once, f"events after the handover, delivered other than once: {not_once}"
        assert max(seen.values()) <= 2, f"delivered more than twice: {seen.most_common(3)}"
    finally:
        await standby.stop()


async def standby_relay(rig: Rig) -> Child:
    """A `banyan relay` process, once it polls for the lock the rig's orders process holds."""
    name = f"drill-standby-{uuid.uuid4().hex[:8]}"
    database_url = str(URL(rig.settings.database_url).update_query(application_name=name))
    relay = rig.child("relay-standby", "-m", "pipelines.cli", "relay", DATABASE_URL=database_url)
    await relay.start(ready=None)
    polling = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND query LIKE 'SELECT pg_try_advisory_lock%'"
    )
    await eventually(
        lambda: rig.fetchval(polling, name), timeout=30, what="the standby relay to poll"
    )
    return relay


async def terminate_relay_session(rig: Rig) -> None:
    ended = await end_lock_session(rig, f"{rig.settings.database_schema}.relay")
    assert ended == [True], f"the relay's lock session: {ended}"


@contextlib.asynccontextmanager
async def deliveries(rig: Rig, routing_key: str) -> AsyncIterator[Counter[str]]:
    """How many times each event (by id) reached a queue bound to the events exchange."""
    seen: Counter[str] = Counter()

    async def count(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen[str((message.headers or {})[h.EVENT_ID])] += 1

    async with rig.channel() as channel:
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(EVENTS_EXCHANGE, routing_key)
        await queue.consume(count, no_ack=True)
        yield seen


async def test_frozen_appender(rig: Rig) -> None:
    """A client begins an append and freezes: PostgreSQL cuts it within APPEND_STALL_TIMEOUT,
    the relay and projections move past it, and nothing of it is in the log."""
    async with under_load(rig, "drill-frozen-appender"):
        frozen = await connect(rig.settings)
        try:
            await frozen.execute("BEGIN")
            event = NewEvent("Stall", uuid.uuid4().hex, 1, "Stalled", "{}")
            store = EventStore(pool=None)  # appends on `frozen` only
            stalled = await store.append([event], conn=frozen)
            # the appender's host freezes here: it never commits nor sends anything again
            await eventually(
                frozen.is_closed,
                timeout=APPEND_STALL_TIMEOUT + 5,
                what="PostgreSQL to cut the frozen appender",
            )
        finally:
            frozen.terminate()  # if it was not cut, its locks would hold the rig's teardown
    assert not await rig.fetchval("SELECT count(*) FROM events WHERE position = $1", stalled)


async def test_frozen_redis(rig: Rig) -> None:
    """Redis stops answering (its connections stay open): orders keep being answered quickly,
    unlimited and uncached, then Redis comes back."""
    clock = asyncio.get_running_loop().time
    async with under_load(rig, "drill-frozen-redis") as load:
        rig.redis.freeze()
        frozen_at = clock()
        try:
            await load.advances(20, "with Redis frozen")
        finally:
            thawed_at = clock()
            rig.redis.thaw()
    slowest = load.ledger.slowest(frozen_at, thawed_at)
    assert slowest < FROZEN_REDIS_LATENCY, f"an answer took {slowest:.2f}s with Redis frozen"


async def test_corrupt_gzip_command(rig: Rig) -> None:
    """A command whose gzip body is not gzip is answered VALIDATION_ERROR once, and gone: not
    requeued, not looping in the service's log."""
    queue = request_queue_name("orders", PlaceOrder)
    since = len(rig.orders.lines)
    async with rig.channel() as channel:
        replies = await channel.declare_queue(exclusive=True)
        # a second answer would be left in `replies`: assert_consistent finds no queue holding one
        async with under_load(rig, "drill-corrupt-gzip"):
            corrupt = aio_pika.Message(
                b"\x1f\x8b not gzip at all",
                content_encoding="gzip",
                reply_to=replies.name,
                correlation_id=uuid.uuid4().hex,
            )
            await channel.default_exchange.publish(corrupt, routing_key=queue)
            reply = await first_message(replies)
            assert json.loads(reply.body)["error"]["code"] == "VALIDATION_ERROR", reply.body
    mentions = [line for line in rig.orders.lines[since:] if "gzip" in line or queue in line]
    assert len(mentions) == 1, "\n".join(mentions[:20])


async def first_message(
    queue: aio_pika.abc.AbstractQueue, timeout: float = 10
) -> aio_pika.abc.AbstractIncomingMessage:
    async with queue.iterator(no_ack=True) as messages:
        try:
            return await asyncio.wait_for(anext(messages), timeout)
        except TimeoutError:
            raise AssertionError(f"nothing reached {queue.name} within {timeout}s") from None
