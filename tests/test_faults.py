"""Bad input and faults: each ends in a clear answer, and nothing acknowledged is lost."""

import asyncio
import uuid

import aio_pika
import pytest
from yarl import URL

from examples.orders.contracts import CancelOrder, PlaceOrder
from pipelines import deadletters
from pipelines.errors import HandlerFailed, ServiceUnavailable
from pipelines.rpc import RpcClient
from tests import sample
from tests.conftest import eventually
from tests.tcp_proxy import TcpProxy, free_port

ITEMS = [{"sku": "pear", "quantity": 1, "unitPrice": "2.00"}]


async def purge_dead_letters(settings) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.get_queue("dlq.service.sample.commands.Explode", ensure=False)
        await dlq.purge()


async def event_count(orders) -> int:
    count: int = await orders.runtime.pool.fetchval("SELECT count(*) FROM events")
    return count


async def test_body_that_is_not_json_gets_validation_error(orders, rpc: RpcClient, token) -> None:
    before = await event_count(orders)
    response = await rpc.request(
        "service.orders.commands.PlaceOrder",
        b"{not json",
        headers={"x-user-token": token("u", "orders:place")},
    )
    error = response.json()["error"]
    assert not response.ok and error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["type"] == "json_invalid"
    assert error["correlationId"]
    assert await event_count(orders) == before


async def test_contract_violation_names_the_fields(orders, rpc, token) -> None:
    before = await event_count(orders)
    bad = b'{"customerId": "x", "items": [{"sku": "a", "quantity": -1, "unitPrice": "1"}]}'
    response = await rpc.request(
        "service.orders.commands.PlaceOrder",
        bad,
        headers={"x-user-token": token("u", "orders:place")},
    )
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["items.0.quantity"]
    assert await event_count(orders) == before


async def test_forged_identity_is_refused(orders, rpc) -> None:
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    response = await rpc.send(
        "orders", PlaceOrder.model_validate({"customerId": "x", "items": ITEMS}), token=forged
    )
    assert response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_handler_that_raises_is_retried_then_dead_lettered(
    settings, sample_service, rpc
) -> None:
    await purge_dead_letters(settings)  # other tests dead-letter Explode commands too
    sample.calls["explode"] = 0
    note = uuid.uuid4().hex
    response = await rpc.send("sample", sample.Explode(note=note), timeout=10)
    with pytest.raises(HandlerFailed, match="boom"):
        response.result()
    assert sample.calls["explode"] == settings.retry_attempts

    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.get_queue("dlq.service.sample.commands.Explode", ensure=False)
        message = await dlq.get(timeout=5, fail=True)
        await message.ack()
    assert note.encode() in message.body
    assert message.headers["x-error-type"] == "RuntimeError"
    error_message = message.headers["x-error-message"]
    assert isinstance(error_message, str) and "boom" in error_message
    assert message.headers["x-retry-count"] == settings.retry_attempts
    assert message.headers["x-original-queue"] == "service.sample.commands.Explode"


async def test_dead_letters_are_listed_and_replayed_after_a_fix(
    settings, sample_service, rpc
) -> None:
    await purge_dead_letters(settings)
    note = uuid.uuid4().hex
    with pytest.raises(HandlerFailed):
        (await rpc.send("sample", sample.Explode(note=note), timeout=10)).result()
    queues = {q.name: q.messages for q in deadletters.dead_letter_queues(settings)}
    assert queues["dlq.service.sample.commands.Explode"] == 1

    sample.repaired.append(note)  # the fix
    assert await deadletters.replay(settings, "service.sample.commands.Explode") == 1
    await eventually(lambda: note in sample.recovered, what="the replayed command to succeed")
    queues = {q.name: q.messages for q in deadletters.dead_letter_queues(settings)}
    assert queues["dlq.service.sample.commands.Explode"] == 0


async def test_same_command_id_is_handled_once(orders, rpc, token) -> None:
    command = PlaceOrder.model_validate({"customerId": "dup", "items": ITEMS})
    command_id = uuid.uuid4().hex
    auth = token("dup", "orders:place")
    first = await rpc.send("orders", command, token=auth, message_id=command_id)
    second = await rpc.send("orders", command, token=auth, message_id=command_id)
    assert first.result() == second.result()
    assert first.position == second.position
    placed = await orders.runtime.pool.fetchval(
        "SELECT count(*) FROM events WHERE data->>'customerId' = 'dup'"
    )
    assert placed == 1


async def test_a_repeated_command_that_its_first_run_made_invalid_gets_the_first_result(
    orders, rpc, token
) -> None:
    auth = token("rita", "orders:place", "orders:cancel")
    placed = await rpc.send(
        "orders", PlaceOrder.model_validate({"customerId": "rita", "items": ITEMS}), token=auth
    )
    cancel = CancelOrder(order_id=placed.result()["orderId"])
    command_id = uuid.uuid4().hex
    first = await rpc.send("orders", cancel, token=auth, message_id=command_id)
    again = await rpc.send("orders", cancel, token=auth, message_id=command_id)
    other = await rpc.send("orders", cancel, token=auth)  # a new command: the order is cancelled
    assert first.ok and again.ok, again.json()
    assert (again.result(), again.position) == (first.result(), first.position)
    assert other.json()["error"]["code"] == "CONFLICT"


async def test_a_waiting_handler_holds_no_database_connection(settings, rpc) -> None:
    config = {"database_pool_size": 2, "prefetch_count": 8, "relay_enabled": False}
    instance = sample.service.instance(settings.model_copy(update=config))
    await instance.start()
    try:
        sample.dawdling["most"] = 0
        replies = await asyncio.gather(
            *(rpc.send("sample", sample.Dawdle(seconds=0.5)) for _ in range(6))
        )
    finally:
        await instance.stop()
    assert all(r.ok for r in replies)
    assert sample.dawdling["most"] == 6  # not 2, the size of the pool


async def test_concurrent_commands_on_one_aggregate(orders, rpc, token) -> None:
    auth = token("eve", "orders:place", "orders:cancel")
    placed = await rpc.send(
        "orders", PlaceOrder.model_validate({"customerId": "eve", "items": ITEMS}), token=auth
    )
    cancel = CancelOrder(order_id=placed.result()["orderId"])
    replies = await asyncio.gather(*(rpc.send("orders", cancel, token=auth) for _ in range(5)))
    codes = sorted("ok" if r.ok else r.json()["error"]["code"] for r in replies)
    assert codes == ["CONFLICT"] * 4 + ["ok"]
    versions = await orders.runtime.store.read_stream("Order", cancel.order_id)
    assert [e.event_type for e in versions] == ["OrderPlaced", "OrderCancelled"]


async def test_concurrent_increments_retry_on_version_clash(sample_service, rpc) -> None:
    counter = uuid.uuid4().hex
    replies = await asyncio.gather(
        *(rpc.send("sample", sample.Increment(counter_id=counter)) for _ in range(3))
    )
    assert sorted(r.result()["version"] for r in replies) == [1, 2, 3]
    assert sorted(r.result()["count"] for r in replies) == [1, 2, 3]


async def test_graceful_shutdown_finishes_in_flight_messages(settings, rpc) -> None:
    instance = sample.service.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    pending = asyncio.create_task(rpc.send("sample", sample.Dawdle(seconds=0.5), timeout=10))
    await asyncio.sleep(0.2)  # the request must be in the handler before we stop
    await instance.stop()
    assert (await pending).result() == "done"


async def test_aggregates_are_snapshotted_and_rebuilt_from_snapshots(sample_service, rpc) -> None:
    counter = uuid.uuid4().hex
    for _ in range(12):
        (await rpc.send("sample", sample.Increment(counter_id=counter))).result()
    store = sample_service.runtime.store
    await eventually(lambda: _snapshot_version(store, counter, 10), what="a snapshot at version 10")
    await store.pool.execute(  # the snapshot now disagrees with the log: proves it is used
        "UPDATE snapshots SET state = jsonb_set(state, '{count}', '100') WHERE aggregate_id = $1",
        counter,
    )
    reply = await rpc.send("sample", sample.Increment(counter_id=counter))
    assert reply.result() == {"version": 13, "count": 103}  # 100 + events 11..13
    events = await store.read_stream("Counter", counter)
    assert [e.version for e in events] == list(range(1, 14))


async def _snapshot_version(store, counter: str, version: int) -> bool:
    found = await store.load_snapshot("Counter", counter, sample.Counter.snapshot_shape)
    return found is not None and found[0] == version and found[1]["count"] == version


async def test_requests_waiting_when_the_connection_drops_fail_at_once(settings) -> None:
    """A request whose reply can no longer arrive gets a clear 503, not a 30 s timeout."""
    real = URL(settings.rabbitmq_url)
    proxy, port = TcpProxy(real.host or "127.0.0.1", real.port or 5672), free_port()
    await proxy.start(port)
    client = await RpcClient(str(real.with_port(port)), service_name="tests").connect()
    admin = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await admin.channel()
        silent = await channel.declare_queue(f"tests.silent.{uuid.uuid4().hex}")
        waiting = asyncio.ensure_future(client.request(silent.name, b"{}", timeout=30))
        await eventually(lambda: client.in_flight == 1, what="the request to be waiting")
        await proxy.stop()
        with pytest.raises(ServiceUnavailable, match="lost the connection to RabbitMQ"):
            await asyncio.wait_for(waiting, 10)
    finally:
        await client.close()
        await admin.close()


async def test_request_to_a_queue_nobody_declared_fails_at_once(rpc, caplog) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(ServiceUnavailable, match="nothing consumes"):
        await rpc.request("service.nobody.commands.Nothing", b"{}", timeout=10)
    assert asyncio.get_running_loop().time() - started < 2
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
