"""Redis through Sentinel: the platform's clients find the master the Sentinels name, and the
gateway fails open for its cache and rate limits while no master can be reached. A private
Redis and Sentinel run on free ports for the test; the machine's Redis is not involved."""

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from examples.orders import service as orders_service
from pipelines.redisclient import connect_redis
from pipelines.redispipe import RedisPipe
from pipelines.settings import Settings
from tests.conftest import eventually
from tests.gateway_rig import running_gateway
from tests.tcp_proxy import free_port
from tests.test_gateway import bearer

pytestmark = pytest.mark.timeout(120)
MASTER = "banyan-test"
SET = "return redis.call('SET', KEYS[1], ARGV[1])"
ITEMS = [{"sku": "plum", "quantity": 1, "unitPrice": "1.10"}]


@contextmanager
def redis_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


async def answers(port: int) -> bool:
    client = aioredis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except RedisError:
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def sentinel(tmp_path: Path) -> AsyncIterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """(master port, Sentinel port, the master's process): a Redis and one Sentinel that
    watches it."""
    master_port, sentinel_port = free_port(), free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
    )
    master_args = ("--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(tmp_path))  # fmt: skip
    with redis_process(*master_args) as master, redis_process(str(config), "--sentinel"):
        await eventually(lambda: answers(master_port), what="the private Redis")
        await eventually(lambda: answers(sentinel_port), what="the Sentinel")
        yield master_port, sentinel_port, master


def through(settings: Settings, sentinel_port: int) -> Settings:
    return settings.model_copy(
        update={"redis_sentinels": f"127.0.0.1:{sentinel_port}", "redis_master_name": MASTER}
    )


async def test_the_client_writes_to_the_master_the_sentinel_names(settings, sentinel) -> None:
    master_port, sentinel_port, _ = sentinel
    client = connect_redis(through(settings, sentinel_port))
    direct = aioredis.Redis(port=master_port)
    key = f"{settings.cache_prefix}:sentinel:{uuid.uuid4().hex}"
    try:
        await client.set(key, "found")
        assert await direct.get(key) == b"found"
    finally:
        await client.aclose()
        await direct.aclose()


async def test_the_pipe_calls_the_master_the_sentinel_names(settings, sentinel) -> None:
    master_port, sentinel_port, _ = sentinel
    client = connect_redis(through(settings, sentinel_port))
    pipe = RedisPipe(client)
    direct = aioredis.Redis(port=master_port)
    key = f"{settings.cache_prefix}:sentinel:{uuid.uuid4().hex}"
    try:
        assert await pipe.script(SET)(keys=[key], args=["piped"]) == b"OK"
        assert await direct.get(key) == b"piped"
    finally:
        await pipe.close()
        await client.aclose()
        await direct.aclose()


async def test_the_gateway_fails_open_while_no_master_answers(
    settings, sentinel, orders, token
) -> None:
    _, sentinel_port, master = sentinel
    master.terminate()
    await asyncio.to_thread(master.wait, 10)
    headers = bearer(token(f"u-{uuid.uuid4().hex[:8]}", "orders:place", "orders:read"))
    async with running_gateway(through(settings, sentinel_port), [orders_service]) as (app, http):
        assert isinstance(app.state.gateway.redis.connection_pool, SentinelConnectionPool)
        placed = await http.post("/api/orders/place-order", json={"items": ITEMS}, headers=headers)
        assert placed.status_code == 200, placed.text
        order_id = placed.json()["orderId"]
        fresh = {**headers, "X-Min-Position": placed.headers["X-Event-Position"]}
        read = await http.get(f"/api/orders/get-order?orderId={order_id}", headers=fresh)
        assert read.status_code == 200, read.text
        assert read.headers.get("X-Cache") != "hit"
