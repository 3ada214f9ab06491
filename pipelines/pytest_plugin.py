"""Integration tests against the real RabbitMQ, PostgreSQL and Redis: what the platform's own
tests use, for yours. Enable it in the `conftest.py` at the top of your tests:

    pytest_plugins = ["pipelines.pytest_plugin"]

Before any test module is imported, the run gets a RabbitMQ virtual host (when `rabbitmqctl`
is on the PATH), a PostgreSQL schema and a Redis key prefix of its own, set in the environment
(`RABBITMQ_URL`, `DATABASE_SCHEMA`, `CACHE_PREFIX`), and all three are dropped when it ends:
runs never see each other's messages, tables or cached answers.

Fixtures: `settings` (this run's), `token(user_id, *permissions, ttl=None)` (a signed access
token), `rpc` (a client that sends commands and queries over the bus), `start_service(service,
**settings)` (a started instance, stopped after the test). Helpers: `eventually`, `started`.
Async fixtures share the session's event loop (pytest-asyncio with
`asyncio_default_fixture_loop_scope = "session"`).
"""

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from pipelines.identity import Caller, TokenCodec
from pipelines.instance import ServiceInstance
from pipelines.rpc import RpcClient
from pipelines.service import Service
from pipelines.settings import Settings
from pipelines.testing.isolation import create_isolated_env, drop_isolated_env
from pipelines.testing.running import eventually, started

ISOLATED = pytest.StashKey[dict[str, str]]()
__all__ = ["eventually", "started"]


def pytest_configure(config: pytest.Config) -> None:
    env = create_isolated_env()
    env["CACHE_PREFIX"] = f"banyan-test-{env['BANYAN_TEST_RUN']}"
    os.environ.update(env)
    config.stash[ISOLATED] = env


def pytest_unconfigure(config: pytest.Config) -> None:
    env = config.stash.get(ISOLATED, None)
    if env is not None:
        asyncio.run(drop_isolated_env(env, env["CACHE_PREFIX"]))


@pytest.fixture(scope="session")
def settings() -> Settings:
    """This run's settings: its own virtual host, schema and cache prefix."""
    return Settings()


@pytest.fixture(scope="session")
def token(settings: Settings) -> Callable[..., str]:
    """`token(user_id, *permissions, ttl=None)`: an access token as auth would issue it."""
    codec = TokenCodec(settings)

    def make(user_id: str = "user-1", *permissions: str, ttl: int | None = None) -> str:
        caller = Caller(user_id, f"{user_id}@example.com", user_id, frozenset(permissions))
        return codec.issue(caller, ttl=ttl)

    return make


@pytest.fixture(scope="session")
async def rpc(settings: Settings) -> AsyncIterator[RpcClient]:
    async with RpcClient(settings.rabbitmq_url, service_name="tests") as client:
        yield client


@pytest.fixture
async def start_service(
    settings: Settings,
) -> AsyncIterator[Callable[..., Awaitable[ServiceInstance]]]:
    """`await start_service(service, **settings)`: a running instance, stopped afterwards."""
    running: list[ServiceInstance] = []

    async def start(service: Service, **overrides: Any) -> ServiceInstance:
        instance = await started(service, settings.model_copy(update=overrides))
        running.append(instance)
        return instance

    yield start
    for instance in reversed(running):
        await instance.stop()
