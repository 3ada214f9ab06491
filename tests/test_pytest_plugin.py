"""The pytest plugin gives a user's integration tests a run of their own on the real servers."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

from pipelines.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CONFTEST = 'pytest_plugins = ["pipelines.pytest_plugin"]\n'
INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""
USER_TEST = """
import os

from examples.inventory import service
from examples.inventory.contracts import AddStock


async def test_a_running_service_answers_over_the_bus(settings, token, rpc, start_service):
    await start_service(service, relay_enabled=False)
    response = await rpc.send(
        "inventory", AddStock(sku="tea", quantity=3), token=token("u-1", "inventory:manage")
    )
    assert response.result()["available"] == 3
    assert settings.database_schema == os.environ["DATABASE_SCHEMA"] != "public"
    assert settings.cache_prefix.startswith("banyan-test-")
    print(f"ISOLATED schema={settings.database_schema} url={settings.rabbitmq_url}")
"""


def test_a_users_integration_tests_run_isolated_and_leave_nothing(tmp_path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_mine.py").write_text(USER_TEST)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_SCHEMA", "RABBITMQ_URL", "CACHE_PREFIX", "BANYAN_TEST_RUN"}
    }
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    found = re.search(r"ISOLATED schema=(\S+) url=(\S+)", run.stdout)
    assert found is not None, run.stdout[-2000:]
    schema, url = found.groups()
    assert schema != Settings().database_schema  # not this run's: one of its own
    assert "/banyan_test_" in url
    assert not asyncio.run(schema_exists(schema)), f"schema {schema} outlived the run"
    vhosts = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert url.rsplit("/", 1)[-1] not in vhosts, "the run's virtual host outlived it"


async def schema_exists(schema: str) -> bool:
    conn = await asyncpg.connect(Settings().database_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema))
    finally:
        await conn.close()
