import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable

import pytest

from tests.isolation import create_isolated_env, drop_isolated_env

# Before any platform module reads settings: this run's own vhost and schema, fast retries.
_ENV = create_isolated_env()
os.environ.update(_ENV)
os.environ.update(
    {
        "RETRY_INITIAL_DELAY": "0.05",
        "RETRY_MAX_DELAY": "0.2",
        "RELAY_POLL_INTERVAL": "0.2",
        "GRACEFUL_TIMEOUT": "5",
        "READ_YOUR_WRITES_TIMEOUT": "1.5",
        "ANNOUNCE_ENABLED": "false",
        "SERVICE_MODULES": "examples.orders",
        "DATABASE_POOL_SIZE": "4",  # many instances share the server's connection limit
        "CACHE_PREFIX": f"banyan-test-{_ENV['BANYAN_TEST_RUN']}",
    }
)

import aio_pika  # noqa: E402

from pipelines import Caller, Service  # noqa: E402
from pipelines.identity import TokenCodec  # noqa: E402
from pipelines.instance import ServiceInstance  # noqa: E402
from pipelines.rpc import RpcClient  # noqa: E402
from pipelines.settings import Settings  # noqa: E402

FULFILMENT_TRIGGERS = (
    "exchange.platform.events.order-fulfilment.orderplaced",
    "exchange.platform.events.order-release.ordercancelled",
)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session", autouse=True)
async def isolated_run() -> AsyncIterator[None]:
    yield
    await drop_isolated_env(_ENV, os.environ["CACHE_PREFIX"])


@pytest.fixture(scope="session")
async def rpc(settings: Settings) -> AsyncIterator[RpcClient]:
    async with RpcClient(settings.rabbitmq_url, service_name="tests") as client:
        yield client


@pytest.fixture(scope="session")
def token(settings: Settings) -> Callable[..., str]:
    codec = TokenCodec(settings)

    def make(user_id: str = "user-1", *permissions: str, ttl: int | None = None) -> str:
        return codec.issue(
            Caller(user_id, f"{user_id}@example.com", user_id, frozenset(permissions)), ttl=ttl
        )

    return make


@pytest.fixture(scope="session")
async def orders(settings: Settings) -> AsyncIterator[ServiceInstance]:
    from examples.orders import service

    instance = service.instance(settings)
    await instance.start()
    yield instance
    await instance.stop()


async def started(service: Service, settings: Settings) -> ServiceInstance:
    """A started instance of `service`, without an event relay (the `orders` fixture's runs)."""
    instance = service.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    return instance


async def purge(settings: Settings, queue: str) -> None:
    """Drop the messages earlier tests left in `queue`, if it exists."""
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
            await (await channel.declare_queue(queue, passive=True)).purge()


@pytest.fixture
async def inventory(settings: Settings) -> AsyncIterator[ServiceInstance]:
    from examples.inventory import service

    instance = await started(service, settings)
    yield instance
    await instance.stop()


@pytest.fixture
async def fulfilment(settings: Settings) -> AsyncIterator[ServiceInstance]:
    """The fulfilment service, its flows rid of the orders earlier tests placed without it."""
    from examples.fulfilment import service

    for queue in FULFILMENT_TRIGGERS:
        await purge(settings, queue)
    instance = await started(service, settings)
    yield instance
    await instance.stop()


@pytest.fixture(scope="session")
async def sample_service(settings: Settings) -> AsyncIterator[ServiceInstance]:
    """The misbehaving sample service of tests/sample.py."""
    from tests import sample

    instance = sample.service.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    yield instance
    await instance.stop()


async def eventually(check: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait (bounded) for a condition that no event announces."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.02)
