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

from tests.conftest import eventually
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


@contextlib.asynccontextmanager
async def orders_process(**env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`faststream run examples.orders:app`, healthy on its METRICS_PORT; killed if left."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faststream", "run", "examples.orders:app",
        env={**os.environ, "METRICS_PORT": str(port), "RELAY_ENABLED": "false",
             "GRACEFUL_TIMEOUT": str(GRACEFUL), **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await eventually(lambda: healthy(port), timeout=60, what="the orders process")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stopped_in(process: asyncio.subprocess.Process) -> float:
    """SIGTERM, then the seconds until the process exited (with 0)."""
    process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    code = await asyncio.wait_for(process.wait(), 60)
    took = time.monotonic() - stopping
    assert took < GRACEFUL + SLACK, f"stopped after {took:.1f} s (GRACEFUL_TIMEOUT {GRACEFUL:g})"
    assert code == 0
    return took


async def test_a_service_stops_in_time_while_elasticsearch_and_otlp_hang(rpc, token) -> None:
    from examples.orders.contracts import PlaceOrder

    command = PlaceOrder.model_validate({"customerId": "hang", "items": [
        {"sku": "fig", "quantity": 1, "unitPrice": "1"}]})  # fmt: skip
    auth = token("hang", "orders:place")
    async with hanging_server() as elastic, hanging_server() as otlp:
        sinks = {"ELASTICSEARCH_URL": elastic.url, "JAEGER_ENDPOINT": f"{otlp.url}/v1/traces",
                 "METRICS_INTERVAL": "0.2"}  # fmt: skip
        async with orders_process(**sinks) as process:

            async def both_stuck() -> bool:
                # orders placed (by it, or by another test's orders instance) until it has a
                # span to export and metrics to ship, both stuck in a receiver that never answers
                assert (await rpc.send("orders", command, token=auth)).ok
                return bool(elastic.connections and otlp.connections)

            await eventually(both_stuck, timeout=30, what="telemetry for the hanging receivers")
            await stopped_in(process)


@pytest.mark.parametrize("frozen", [("postgres",), ("rabbitmq",), ("postgres", "rabbitmq")])
async def test_a_service_stops_in_time_while_its_servers_hang(settings, frozen) -> None:
    proxies = {"postgres": proxy_for(settings.database_url),
               "rabbitmq": proxy_for(settings.rabbitmq_url)}  # fmt: skip
    for proxy, port, _ in proxies.values():
        await proxy.start(port)
    urls = {"DATABASE_URL": proxies["postgres"][2], "RABBITMQ_URL": proxies["rabbitmq"][2]}
    try:
        async with orders_process(**urls) as process:
            for name in frozen:
                proxies[name][0].freeze()
            await stopped_in(process)
    finally:
        for proxy, _, _ in proxies.values():
            await proxy.stop()
