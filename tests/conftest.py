import contextlib
import os
from collections.abc import AsyncIterator

import aio_pika
import pytest

from pipelines import Service
from pipelines.instance import ServiceInstance
from pipelines.settings import Settings
from pipelines.testing.running import eventually
from pipelines.testing.running import started as started_with

# The run's own vhost, schema and Redis prefix come from the plugin (pipelines.pytest_plugin);
# before any platform module reads settings: fast retries, and settings of these tests.
pytest_plugins = ["pipelines.pytest_plugin"]
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
    }
)
__all__ = ["eventually", "started"]

FULFILMENT_TRIGGERS = (
    "exchange.platform.events.order-fulfilment.orderplaced",
    "exchange.platform.events.order-release.ordercancelled",
)


@pytest.fixture(scope="session")
async def orders(settings: Settings) -> AsyncIterator[ServiceInstance]:
    from examples.orders import service

    instance = service.instance(settings)
    await instance.start()
    yield instance
    await instance.stop()


async def started(service: Service, settings: Settings) -> ServiceInstance:
    """A started instance of `service`, without an event relay (the `orders` fixture's runs)."""
    return await started_with(service, settings.model_copy(update={"relay_enabled": False}))


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

    instance = await started(sample.service, settings)
    yield instance
    await instance.stop()
