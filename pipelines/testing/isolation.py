"""Each test run gets its own RabbitMQ virtual host, PostgreSQL schema and Redis prefix."""

import shutil
import subprocess
import uuid

import asyncpg
import redis.asyncio as redis

from pipelines.rabbitnodes import nodes_url, rabbitmq_nodes
from pipelines.settings import Settings


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_isolated_env() -> dict[str, str]:
    run_id = uuid.uuid4().hex[:10]
    base = Settings()
    env = {"DATABASE_SCHEMA": f"test_{run_id}", "BANYAN_TEST_RUN": run_id}
    if shutil.which("rabbitmqctl"):
        vhost = f"banyan_test_{run_id}"
        _rabbitmqctl("add_vhost", vhost)
        nodes = rabbitmq_nodes(base.rabbitmq_url)
        _rabbitmqctl("set_permissions", "-p", vhost, nodes[0].user or "guest", ".*", ".*", ".*")
        env["RABBITMQ_URL"] = nodes_url([node.with_path("/" + vhost) for node in nodes])
        env["BANYAN_TEST_VHOST"] = vhost
    return env


async def drop_isolated_env(env: dict[str, str], redis_prefix: str | None = None) -> None:
    settings = Settings()
    conn = await asyncpg.connect(settings.database_url)
    try:
        # a session a test left in a transaction fails the run's end, not hangs it
        await conn.execute("SET lock_timeout = '30s'")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{env["DATABASE_SCHEMA"]}" CASCADE')
    finally:
        await conn.close()
    if vhost := env.get("BANYAN_TEST_VHOST"):
        _rabbitmqctl("delete_vhost", vhost)
    if redis_prefix is not None:
        await _drop_keys(settings.redis_url, redis_prefix)


async def _drop_keys(url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(f"{redis_prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()
