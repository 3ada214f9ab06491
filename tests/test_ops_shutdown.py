"""A process stops within GRACEFUL_TIMEOUT whatever its servers do: Elasticsearch and the
OTLP endpoint accepting connections and never answering, PostgreSQL or RabbitMQ frozen."""

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import eventually, started
from tests.tcp_proxy import free_port, proxy_for

pytestmark = pytest.mark.timeout(180)
GRACEFUL = 4.0
SLACK = 1.0  # seconds for the interpreter to start tearing down and exit


class Hanging:
    """A server that accepts and reads, and never answers; it counts its connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""

    async def _never_answer(self, reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass


@contextlib.asynccontextmanager
async def hanging_server() -> AsyncIterator[Hanging]:
    hanging = Hanging()
    server = await asyncio.start_server(hanging._never_answer, "127.0.0.1", 0)
    hanging.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield hanging
    finally:
        server.close()


async def healthy(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"http://127.0.0.1:{port}/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json()["status"] == "ok"


ORDERS = ["-m", "faststream", "run", "examples.orders:app"]


@contextlib.asynccontextmanager
async def platform_process(
    argv: list[str] = ORDERS, port: int = 0, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process of the platform (the orders service by default), healthy on `/health` of its
    METRICS_PORT (or the gateway's port); killed if left running."""
    port = port or free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv,
        env={**os.environ, "METRICS_PORT": str(port),
             "RELAY_ENABLED": "false", "GRACEFUL_TIMEOUT": str(GRACEFUL), **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await eventually(lambda: healthy(port), timeout=60, what=f"{argv} to be healthy")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stopped_in(process: asyncio.subprocess.Process) -> float:
    """SIGTERM, then the seconds until the process exited (uvicorn exits by the signal it
    caught once it has shut down)."""
    process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    code = await asyncio.wait_for(process.wait(), 60)
    took = time.monotonic() - stopping
    assert took < GRACEFUL + SLACK, f"stopped after {took:.1f} s (GRACEFUL_TIMEOUT {GRACEFUL:g})"
    assert code in (0, -signal.SIGTERM)
    return took


async def test_a_service_stops_in_time_while_elasticsearch_and_otlp_hang(rpc, token) -> None:
    from examples.orders.contracts import PlaceOrder

    command = PlaceOrder.model_validate({"customerId": "hang", "items": [
        {"sku": "fig", "quantity": 1, "unitPrice": "1"}]})  # fmt: skip
    auth = token("hang", "orders:place")
    async with hanging_server() as elastic, hanging_server() as otlp, platform_process(
        ELASTICSEARCH_URL=elastic.url, JAEGER_ENDPOINT=f"{otlp.url}/v1/traces",
        METRICS_INTERVAL="0.2",
    ) as process:  # fmt: skip

        async def both_stuck() -> bool:
            # orders placed (by it, or by another test's orders instance) until it has a
            # span to export and metrics to ship, both stuck in a receiver that never answers
            assert (await rpc.send("orders", command, token=auth)).ok
            return bool(elastic.connections and otlp.connections)

        await eventually(both_stuck, timeout=30, what="telemetry for the hanging receivers")
        await stopped_in(process)


@pytest.mark.parametrize(
    ("process", "frozen"),
    [("orders", ("postgres",)), ("orders", ("rabbitmq",)), ("orders", ("postgres", "rabbitmq")),
     ("gateway", ("rabbitmq",))],
)  # fmt: skip
async def test_a_process_stops_in_time_while_its_servers_hang(settings, process, frozen) -> None:
    from gateway.process import development_process

    port = free_port()
    gateway = development_process(settings.model_copy(update={"gateway_port": port}))[1]
    argv = gateway if process == "gateway" else ORDERS
    proxies = {"postgres": proxy_for(settings.database_url),
               "rabbitmq": proxy_for(settings.rabbitmq_url)}  # fmt: skip
    for proxy, listen, _ in proxies.values():
        await proxy.start(listen)
    urls = {"DATABASE_URL": proxies["postgres"][2], "RABBITMQ_URL": proxies["rabbitmq"][2]}
    async with contextlib.AsyncExitStack() as stack:
        for proxy, _, _ in proxies.values():
            stack.push_async_callback(proxy.stop)
        if process == "gateway":  # it starts once it has read the registry
            from discovery import service as discovery

            stack.push_async_callback((await started(discovery, settings)).stop)
        running = await stack.enter_async_context(platform_process(argv, port, **urls))
        if process == "gateway":  # a client that stays: uvicorn would wait for it forever
            await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/ws"))
        for name in frozen:
            proxies[name][0].freeze()
        await stopped_in(running)
