"""Helpers for tests against running servers (see `pipelines.pytest_plugin`)."""

import asyncio
from collections.abc import Callable

from pipelines.instance import ServiceInstance
from pipelines.service import Service
from pipelines.settings import Settings


async def started(service: Service, settings: Settings) -> ServiceInstance:
    """A started instance of `service` with `settings`."""
    instance = service.instance(settings)
    await instance.start()
    return instance


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
