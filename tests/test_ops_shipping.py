"""The metrics shipper against an Elasticsearch that refuses: a permanent 4xx drops the batch
with one log line; a 5xx, a 429 or no connection keeps it for the next try."""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import pytest
from elasticsearch import Elasticsearch

from pipelines.telemetry.documents import Snapshot
from pipelines.telemetry.metrics import METRICS
from pipelines.telemetry.shipping import MetricsShipper, Source
from tests.tcp_proxy import free_port

BODY = {"error": {"type": "mapper_parsing_exception", "reason": "bad field"}, "status": 0}


class Answering:
    """An HTTP server answering every request with one status and an Elasticsearch error."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                await reader.readexactly(length)
                self.requests += 1
                body = json.dumps({**BODY, "status": self.status}).encode()
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\ncontent-type: application/json\r\n"
                    f"x-elastic-product: Elasticsearch\r\ncontent-length: {len(body)}\r\n\r\n"
                    .encode() + body
                )  # fmt: skip
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def elasticsearch_answering(status: int) -> AsyncIterator[tuple[Answering, str]]:
    answering = Answering(status)
    server = await asyncio.start_server(answering.answer, "127.0.0.1", 0)
    try:
        yield answering, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def shipper(url: str) -> MetricsShipper:
    client = Elasticsearch(url, request_timeout=5, max_retries=0)
    shipper = MetricsShipper(client, "banyan-metrics-ops", interval=60, buffer_size=1000)
    shipper.attach(Source(Snapshot(METRICS.registry), None))
    return shipper


def dropped() -> float:
    return METRICS.registry.get_sample_value("banyan_metrics_dropped_total") or 0.0


async def test_a_permanent_4xx_drops_the_batch_with_one_line(caplog) -> None:
    async with elasticsearch_answering(400) as (elastic, url):
        ship = shipper(url)
        before = dropped()
        await asyncio.to_thread(ship.collect)
        buffered = len(ship.buffer)
        with caplog.at_level(logging.INFO, logger="banyan.telemetry"):
            await asyncio.to_thread(ship.send)
            await asyncio.to_thread(ship.send)  # nothing left to send again
        ship.client.close()
    assert buffered > 0 and not ship.buffer
    assert dropped() == before + buffered
    assert elastic.requests == 1  # the template, refused: the batch was not tried again
    lines = [r for r in caplog.records if r.name == "banyan.telemetry"]
    assert len(lines) == 1 and "400" in lines[0].getMessage(), [r.getMessage() for r in lines]


@pytest.mark.parametrize("status", [503, 429])
async def test_a_5xx_or_429_keeps_the_batch_for_the_next_try(status: int) -> None:
    async with elasticsearch_answering(status) as (elastic, url):
        ship = shipper(url)
        await asyncio.to_thread(ship.collect)
        buffered = len(ship.buffer)
        await asyncio.to_thread(ship.send)
        await asyncio.to_thread(ship.send)
        ship.client.close()
    assert buffered > 0 and len(ship.buffer) == buffered and ship._failing
    assert elastic.requests == 2


async def test_no_connection_keeps_the_batch() -> None:
    ship = shipper(f"http://127.0.0.1:{free_port()}")
    await asyncio.to_thread(ship.collect)
    buffered = len(ship.buffer)
    await asyncio.to_thread(ship.send)
    ship.client.close()
    assert buffered > 0 and len(ship.buffer) == buffered and ship._failing
