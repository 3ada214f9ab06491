"""Idempotency records expire after COMMAND_RESULT_RETENTION; fresh ones stay."""

import uuid

from pipelines import Command, Context, Service
from pipelines.eventstore import EventStore
from pipelines.idempotency import record_id
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from tests.conftest import eventually

HOUR = 3600.0
DAY = 24 * HOUR


class ProbeExpiry(Command):
    note: str = ""


async def recorded(store: EventStore, age: float) -> str:
    """The id of a new idempotency record made `age` seconds ago."""
    command_id = uuid.uuid4().hex
    await store.pool.execute(
        "INSERT INTO command_results (command_id, message_type, created_at) "
        "VALUES ($1, 'ProbeExpiry', now() - make_interval(secs => $2))",
        command_id,
        age,
    )
    return command_id


async def kept(store: EventStore, ids: list[str]) -> set[str]:
    rows = await store.pool.fetch(
        "SELECT command_id FROM command_results WHERE command_id = ANY($1::text[])", ids
    )
    return {row["command_id"] for row in rows}


async def test_old_results_go_and_fresh_ones_stay(orders) -> None:
    store: EventStore = orders.runtime.store
    old = [await recorded(store, 2 * DAY + i) for i in range(5)]
    fresh = [await recorded(store, HOUR), await recorded(store, DAY - 60)]
    assert await store.expire_command_results(DAY, batch=2) == len(old)
    assert await kept(store, old + fresh) == set(fresh)


async def test_a_sweep_is_bounded_and_takes_the_oldest_first(orders) -> None:
    store: EventStore = orders.runtime.store
    old = [await recorded(store, 2 * DAY + i) for i in range(5)]
    assert await store.expire_command_results(DAY, batch=2, batches=2) == 4
    assert await kept(store, old) == {old[0]}  # the youngest of them


async def test_handling_commands_sweeps_expired_results(settings: Settings, rpc: RpcClient) -> None:
    probes = Service("expiry")

    @probes.command(ProbeExpiry)
    async def probe(command: ProbeExpiry, ctx: Context) -> str:
        return "ok"

    instance = probes.instance(
        settings.model_copy(update={"command_result_retention": HOUR, "relay_enabled": False})
    )
    await instance.start()
    try:
        store = instance.runtime.store
        assert store is not None
        old, fresh = await recorded(store, 2 * HOUR), await recorded(store, HOUR - 60)
        command_id = uuid.uuid4().hex
        reply = await rpc.send("expiry", ProbeExpiry(), message_id=command_id)
        assert reply.ok
        record = record_id(command_id, "expiry", "ProbeExpiry", None)  # sent anonymously
        ids = [old, fresh, record]

        async def only_old_gone() -> bool:
            return await kept(store, ids) == {fresh, record}

        await eventually(only_old_gone, what="the expired result to go")
    finally:
        await instance.stop()
