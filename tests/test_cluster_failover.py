"""Clustered engines, tried against the machine's own servers: a RabbitMQ URL naming a dead node
first, a node that goes away under a running client, quorum queues, a PostgreSQL URL naming a
dead host first."""

import functools
import json
import subprocess
from itertools import pairwise
from typing import cast

import pytest
from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from pipelines import Command, Context, Service
from pipelines.database import connect, create_pool
from pipelines.positions import PositionWatcher, positions_channel
from pipelines.rabbitnodes import connect_rabbitmq, nodes_url, rabbitmq_nodes
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from tests.conftest import eventually
from tests.tcp_proxy import free_port, proxy_for

pytestmark = pytest.mark.timeout(120)


class Ping(Command):
    note: str = ""


def with_dead_node_first(url: str, **query: str) -> str:
    """`url` with a node where nothing listens before its own."""
    real = rabbitmq_nodes(url)[0].update_query(query)
    return nodes_url([real.with_port(free_port()), real])


def pinging(name: str) -> Service:
    service = Service(name)

    @service.command(Ping)
    async def ping(command: Ping, ctx: Context) -> str:
        return f"pong {command.note}"

    return service


def port_of(connection: AbstractRobustConnection) -> int | None:
    """The port of the node a connection is on (the robust connection's current URL)."""
    return cast(RobustConnection, connection).url.port


def on_node(connection: AbstractRobustConnection, port: int) -> bool:
    return connection.connected.is_set() and port_of(connection) == port


async def test_a_connection_skips_a_node_that_refuses(settings: Settings) -> None:
    real = rabbitmq_nodes(settings.rabbitmq_url)[0]
    connection = await connect_rabbitmq(with_dead_node_first(settings.rabbitmq_url))
    try:
        assert port_of(connection) == real.port
        channel = await connection.channel()
        await channel.declare_exchange("amq.direct", passive=True)
    finally:
        await connection.close()


async def test_a_service_starts_and_answers_with_its_first_node_dead(
    settings: Settings, start_service, rpc: RpcClient
) -> None:
    url = with_dead_node_first(settings.rabbitmq_url)
    await start_service(pinging("failover-start"), rabbitmq_url=url, relay_enabled=False)
    reply = await rpc.send("failover-start", Ping(note="a"), timeout=10)
    assert reply.result() == "pong a"
    async with RpcClient(url, service_name="tests") as client:
        assert (
            await client.send("failover-start", Ping(note="b"), timeout=10)
        ).result() == "pong b"


async def test_a_client_whose_node_goes_away_carries_on_through_the_next(
    settings: Settings, start_service
) -> None:
    await start_service(pinging("failover-loss"), relay_enabled=False)
    proxy, port, through_proxy = proxy_for(settings.rabbitmq_url)
    await proxy.start(port)
    real = rabbitmq_nodes(settings.rabbitmq_url)[0]
    quick = {"reconnect_interval": "0.2"}
    url = nodes_url([URL(through_proxy).update_query(quick), real.update_query(quick)])
    async with RpcClient(url, service_name="tests") as client:
        assert (await client.send("failover-loss", Ping(note="1"), timeout=10)).ok
        await proxy.stop()  # the first node goes away, its connections with it

        async def answered() -> bool:
            try:
                reply = await client.send("failover-loss", Ping(note="2"), timeout=2)
            except Exception:
                return False
            return bool(reply.ok)

        await eventually(answered, timeout=20, what="a reply through the second node")
        assert client._connection is not None and port_of(client._connection) == real.port


async def test_a_lost_node_is_followed_by_the_next_in_the_order_written(
    settings: Settings,
) -> None:
    """Nodes A, B, C (all leading to the real broker): A goes away, the connection moves to B,
    not to C; B goes away too, it moves to C."""
    proxies = [proxy_for(settings.rabbitmq_url) for _ in range(3)]
    for proxy, port, _ in proxies:
        await proxy.start(port)
    quick = {"reconnect_interval": "0.2"}
    connection = await connect_rabbitmq(
        nodes_url([URL(url).update_query(quick) for _, _, url in proxies])
    )
    try:
        for lost, (_, next_port, _) in pairwise(proxies):
            await lost[0].stop()
            await eventually(
                functools.partial(on_node, connection, next_port),
                timeout=15,
                what=f"the connection on the node at port {next_port}",
            )
        channel = await connection.channel()
        await channel.declare_exchange("amq.direct", passive=True)
    finally:
        await connection.close()
        for proxy, _, _ in proxies:
            await proxy.stop()


def queue_arguments(settings: Settings) -> dict[str, tuple[str, dict[str, object]]]:
    """Every queue of this run's virtual host: its type and arguments (rabbitmqctl)."""
    vhost = rabbitmq_nodes(settings.rabbitmq_url)[0].path.lstrip("/") or "/"
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "name", "type", "arguments", "--formatter",
         "json"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return {q["name"]: (q["type"], {k: v for k, _, v in q["arguments"]}) for q in json.loads(out)}


async def test_quorum_queues_for_requests_and_dead_letters_with_a_delivery_limit(
    settings: Settings, start_service, rpc: RpcClient
) -> None:
    await start_service(
        pinging("quorum"),
        rabbitmq_queue_type="quorum",
        rabbitmq_delivery_limit=9,
        relay_enabled=False,
    )
    assert (await rpc.send("quorum", Ping(note="q"), timeout=10)).result() == "pong q"
    queues = queue_arguments(settings)
    for name in ("service.quorum.commands.Ping", "dlq.service.quorum.commands.Ping"):
        kind, arguments = queues[name]
        assert kind == "quorum", name
        assert arguments["x-delivery-limit"] == 9, name


async def test_postgres_url_with_a_dead_first_host_reaches_the_read_write_one(
    settings: Settings,
) -> None:
    real = URL(settings.database_url)
    hosts = f"127.0.0.1:{free_port()},{real.host}:{real.port or 5432}"
    user = f"{real.raw_user}@" if real.raw_user else ""
    url = f"{real.scheme}://{user}{hosts}{real.raw_path}?target_session_attrs=read-write"
    several = settings.model_copy(update={"database_url": url})
    conn = await connect(several)
    try:
        assert await conn.fetchval("SELECT NOT pg_is_in_recovery()")
    finally:
        await conn.close()
    pool = await create_pool(several, 2)
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_read_your_writes_hears_positions_again_after_its_connection_is_cut(
    settings: Settings,
) -> None:
    """A failover (or a restart) ends the watcher's LISTEN session: it listens on a new one."""
    pool = await create_pool(settings, 2)
    watcher = PositionWatcher(settings, pool)
    await watcher.start()
    try:
        listening = watcher._conn
        assert listening is not None
        await pool.execute("SELECT pg_terminate_backend($1)", listening.get_server_pid())
        sent = iter(range(1, 1_000_000))

        async def heard() -> bool:  # a NOTIFY alone, never the table, raises what it knows
            await pool.execute("SELECT pg_notify($1, $2)", positions_channel(settings),
                               f"failover_probe:{next(sent)}")  # fmt: skip
            return watcher.latest.get("failover_probe", 0) > 0

        await eventually(heard, timeout=15, what="a position notified after the cut")
    finally:
        await watcher.stop()
        await pool.close()
