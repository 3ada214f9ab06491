"""The example service run the way users run it: `faststream run ... --workers N`."""

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable

import aio_pika
import httpx

from examples.orders.contracts import PlaceOrder
from tests.conftest import eventually

ITEMS = [{"sku": "kiwi", "quantity": 1, "unitPrice": "0.30"}]


async def consumers(settings, queue: str) -> int:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)


async def test_faststream_run_with_two_workers(settings, orders, rpc, token) -> None:
    queue = "service.orders.commands.PlaceOrder"
    before = await consumers(settings, queue)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faststream", "run", "examples.orders:app", "--workers", "2",
        env={**os.environ, "RELAY_ENABLED": "false"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await eventually(
            lambda: _more(consumers(settings, queue), before + 2), timeout=60,
            what="two worker processes consuming PlaceOrder",
        )  # fmt: skip
        command = PlaceOrder.model_validate({"customerId": "workers", "items": ITEMS})
        auth = token("workers", "orders:place")
        replies = await asyncio.gather(
            *(rpc.send("orders", command, token=auth) for _ in range(40))
        )
        assert all(r.ok and r.position for r in replies)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def _more(count: Awaitable[int], at_least: int) -> bool:
    return await count >= at_least


async def test_banyan_up_kills_a_process_that_ignores_sigterm(capsys) -> None:
    from pipelines.devserver import Output, _stop_all

    ready = "print(1, flush=True); time.sleep(60)"
    deaf = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); {ready}"
    polite = f"import time; {ready}"
    children = {
        name: await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        for name, code in (("deaf", deaf), ("polite", polite))
    }
    for child in children.values():  # both have set their signal handling up
        assert child.stdout is not None and await child.stdout.readline() == b"1\n"
    codes = await _stop_all(children, 0.5, Output(list(children), raw=False))
    assert codes == [-signal.SIGKILL, -signal.SIGTERM]
    assert "deaf (pid" in capsys.readouterr().out


async def test_a_services_port_is_set_by_its_name(settings, monkeypatch) -> None:
    """`{NAME}_PORT` gives any service its `/health` port, not only the platform's own."""
    from pipelines import Service
    from tests.conftest import started
    from tests.tcp_proxy import free_port

    port = free_port()
    monkeypatch.setenv("READING_ROOM_PORT", str(port))
    instance = await started(Service("reading-room"), settings)
    try:
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"http://127.0.0.1:{port}/health")).json()
        assert (health["service"], health["status"]) == ("reading-room", "ok")
    finally:
        await instance.stop()
