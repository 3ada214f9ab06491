"""Each test run gets its own RabbitMQ virtual host and PostgreSQL schema."""

import shutil
import subprocess
import uuid

import asyncpg
from yarl import URL

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
        user = URL(base.rabbitmq_url).user or "guest"
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        env["RABBITMQ_URL"] = str(URL(base.rabbitmq_url).with_path("/" + vhost))
        env["BANYAN_TEST_VHOST"] = vhost
    return env


async def drop_isolated_env(env: dict[str, str]) -> None:
    conn = await asyncpg.connect(Settings().database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{env["DATABASE_SCHEMA"]}" CASCADE')
    finally:
        await conn.close()
    if vhost := env.get("BANYAN_TEST_VHOST"):
        _rabbitmqctl("delete_vhost", vhost)
