"""Settings for clustered engines: several RabbitMQ nodes in one URL, quorum queues with a
delivery limit, Redis through Sentinel."""

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from yarl import URL

from pipelines.connecting import safe_url
from pipelines.rabbitnodes import nodes_url, rabbitmq_nodes
from pipelines.redisclient import connect_redis, sentinel_addresses
from pipelines.settings import Settings
from pipelines.topology import dead_letter_queue, work_queue

pytestmark = pytest.mark.unit

CLUSTER = "amqp://admin:s3cret@rabbit-1:5681,rabbit-2:5682,rabbit-3/orders?heartbeat=5"


def test_one_host_is_one_node_as_written() -> None:
    assert rabbitmq_nodes("amqp://guest:guest@127.0.0.1:5672/") == [
        URL("amqp://guest:guest@127.0.0.1:5672/")
    ]


def test_each_host_is_a_node_with_the_credentials_vhost_and_options_in_order() -> None:
    nodes = rabbitmq_nodes(CLUSTER)
    assert [(n.host, n.port) for n in nodes] == [
        ("rabbit-1", 5681),
        ("rabbit-2", 5682),
        ("rabbit-3", 5672),
    ]
    assert {(n.user, n.password, n.path, n.query_string) for n in nodes} == {
        ("admin", "s3cret", "/orders", "heartbeat=5")
    }


def test_spaces_and_empty_entries_between_hosts_are_ignored() -> None:
    nodes = rabbitmq_nodes("amqp://h1:1, h2:2,,/")
    assert [(n.host, n.port) for n in nodes] == [("h1", 1), ("h2", 2)]


def test_nodes_join_back_into_one_url() -> None:
    nodes = [node.with_path("/other").with_query(node.query) for node in rabbitmq_nodes(CLUSTER)]
    assert nodes_url(nodes) == (
        "amqp://admin:s3cret@rabbit-1:5681,rabbit-2:5682,rabbit-3:5672/other?heartbeat=5"
    )
    assert rabbitmq_nodes(nodes_url(nodes)) == nodes


def test_a_url_with_several_hosts_is_logged_without_its_password() -> None:
    assert safe_url(CLUSTER) == (
        "amqp://admin:***@rabbit-1:5681,rabbit-2:5682,rabbit-3/orders?heartbeat=5"
    )
    postgres = "postgresql://app:pw@pg-1:5441,pg-2:5442/db?target_session_attrs=read-write"
    assert safe_url(postgres) == (
        "postgresql://app:***@pg-1:5441,pg-2:5442/db?target_session_attrs=read-write"
    )
    assert safe_url("postgresql://postgres@127.0.0.1/db") == "postgresql://postgres@127.0.0.1/db"


def test_quorum_queues_carry_a_delivery_limit_classic_ones_none() -> None:
    quorum = Settings(rabbitmq_queue_type="quorum", rabbitmq_delivery_limit=7)
    for queue in (work_queue(quorum, "service.s.commands.Do"), dead_letter_queue(quorum, "q")):
        assert queue.arguments["x-queue-type"] == "quorum"
        assert queue.arguments["x-delivery-limit"] == 7
    classic = work_queue(Settings(), "service.s.commands.Do")
    assert classic.arguments["x-queue-type"] == "classic"
    assert "x-delivery-limit" not in classic.arguments


def test_sentinels_are_read_as_host_port_pairs() -> None:
    settings = Settings(redis_sentinels="s1:26381, s2 ,s3:26383", redis_master_name="banyan")
    assert sentinel_addresses(settings) == [("s1", 26381), ("s2", 26379), ("s3", 26383)]
    assert sentinel_addresses(Settings()) == []


async def test_without_sentinels_the_client_talks_to_redis_url() -> None:
    client = connect_redis(Settings(redis_url="redis://cache-host:6390/2"))
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache-host", 6390, 2)
    finally:
        await client.aclose()


async def test_with_sentinels_the_client_asks_them_for_the_master() -> None:
    settings = Settings(
        redis_url="redis://:pw@ignored:1/3",
        redis_sentinels="s1:26381,s2:26382",
        redis_master_name="banyan",
        redis_timeout=0.25,
    )
    client = connect_redis(settings)
    try:
        assert isinstance(client, aioredis.Redis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "banyan"
        sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert [(s["host"], s["port"]) for s in sentinels] == [("s1", 26381), ("s2", 26382)]
        # the master's password and database come from REDIS_URL; every call stays bounded
        kwargs = pool.connection_kwargs
        assert (kwargs["password"], kwargs["db"]) == ("pw", 3)
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25
    finally:
        await client.aclose()


def test_sentinels_need_a_master_name() -> None:
    with pytest.raises(ValueError, match="REDIS_MASTER_NAME"):
        Settings(redis_sentinels="s1:26381")
