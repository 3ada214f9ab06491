"""Metrics an operator can trust: labels from closed sets, every service process with its own
`/metrics` and health, the lag of the log's readers, flows stuck past a deadline, and
`banyan status` / `banyan projections status` that fail when something is unhealthy."""

import asyncio
import json
import os
import re
import sys
import uuid

import aio_pika
import httpx

from flows import MIGRATIONS
from flows.deadlines import past_deadline, status_sections
from flows.settings import FlowSettings
from pipelines import Command, Context, Service
from pipelines.database import connect, migrate
from pipelines.telemetry import sampling
from pipelines.telemetry.metrics import METRICS
from tests.conftest import eventually, started
from tests.tcp_proxy import free_port
from tests.test_observability import gateway

quiet = Service("quiet")  # no HTTP port of its own, as orders, inventory and fulfilment


class Hush(Command):
    pass


@quiet.command(Hush)
async def hush(command: Hush, ctx: Context) -> str:
    return "hushed"


# methods no gateway route takes: made up (httptools refuses them before the app, h11 lets
# them through), and ones HTTP parsers know (WebDAV, cache purges), which reach the app
MADE_UP = [f"BREW{number}" for number in range(30)]
UNROUTED = ["PROPFIND", "MKCOL", "PURGE", "LINK", "SEARCH", "REPORT"]


async def test_made_up_http_methods_make_no_new_series(settings, orders) -> None:
    async with gateway(settings) as client:
        answers = [(await client.request(method, "/health")).status_code
                   for method in MADE_UP + UNROUTED]  # fmt: skip
        await client.get("/health")
        exposed = (await client.get("/metrics")).text
    assert all(400 <= status < 500 for status in answers), answers
    assert "process_resident_memory_bytes" in exposed  # the gateway's process, too
    methods = {line.split('method="')[1].split('"')[0] for line in exposed.splitlines()
               if line.startswith("gateway_requests_total{")}  # fmt: skip
    assert "other" in methods and methods <= {"GET", "POST", "other"}, methods


async def test_a_service_without_http_serves_health_and_metrics_on_its_metrics_port(
    settings, orders
) -> None:
    port = free_port()
    instance = await started(quiet, settings.model_copy(update={"metrics_port": port}))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = (await client.get("/health")).json()
            exposed = ""

            async def loop_lag_measured() -> bool:
                nonlocal exposed
                exposed = (await client.get("/metrics")).text
                lag = re.search(r"^banyan_event_loop_lag_seconds (\S+)$", exposed, re.M)
                return lag is not None and float(lag[1]) > 0

            await eventually(loop_lag_measured, what="the event loop's lag measured")
    finally:
        await instance.stop()
    assert health["status"] == "ok" and health["service"] == "quiet"
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "banyan_event_loop_lag_seconds",
                   "banyan_dead_letter_depth"):  # fmt: skip
        assert family in exposed, family


async def test_relay_and_projection_lag_are_sampled_in_seconds(settings, orders) -> None:
    await sampling.sample(orders)
    if orders.relay is not None and orders.relay.is_leader.is_set():
        assert METRICS.registry.get_sample_value("banyan_relay_lag_seconds",
                                                 {"service": "orders"}) is not None  # fmt: skip
        assert METRICS.registry.get_sample_value("banyan_relay_lag_events",
                                                 {"service": "orders"}) is not None  # fmt: skip
    if orders.runners["order_summary"].is_leader.is_set():
        labels = {"service": "orders", "projection": "order_summary"}
        lag = METRICS.registry.get_sample_value("banyan_projection_lag_seconds", labels)
        assert lag is not None and lag >= 0


async def test_a_flow_run_stuck_past_its_deadline_is_counted_and_unhealthy(settings) -> None:
    await migrate(settings, [MIGRATIONS])
    run = f"ops-stuck:{uuid.uuid4().hex}"
    conn = await connect(settings)
    try:
        before = await past_deadline(conn, FlowSettings())
        await conn.execute(
            "INSERT INTO flow_runs (id, flow, key, input) VALUES ($1, 'ops-stuck', $1, '{}')", run
        )
        await conn.execute(
            "INSERT INTO flow_steps (run_id, phase, step, service, queue, message_type, message, "
            "message_id, deadline_at) VALUES ($1, 'do', 'wait', 's', 'q', 'M', '{}', $1, "
            "now() - interval '1 hour')",
            run,
        )
        assert await past_deadline(conn, FlowSettings()) == before + 1
        [section] = await status_sections(settings)
        assert not section.healthy and f"{before + 1} run(s)" in section.lines[0]
    finally:
        await conn.execute("DELETE FROM flow_runs WHERE id = $1", run)
        await conn.close()


async def banyan(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", *args, env={**os.environ, "GATEWAY_PORT": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_banyan_status_fails_with_dead_letters_and_speaks_json(settings, orders) -> None:
    queue = f"dlq.service.ops.commands.Broken{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue)
        try:
            code, out = await banyan("status", "--json")
        finally:
            await channel.queue_delete(queue)
    assert code == 1, out
    report = json.loads(out)
    sections = {s["title"]: s for s in report["sections"]}
    assert report["healthy"] is False
    assert not sections["Dead letters"]["healthy"]
    assert any(queue in line for line in sections["Dead letters"]["lines"])
    assert any(line.startswith("relay at position") or line == "relay has not run yet"
               for line in sections["Event log"]["lines"])  # fmt: skip


async def test_banyan_projections_status_fails_when_one_has_stopped(settings, orders) -> None:
    name = f"ops_broken_{uuid.uuid4().hex[:6]}"
    conn = await connect(settings)
    try:
        await conn.execute("INSERT INTO projection_positions (name) VALUES ($1)", name)
        code, out = await banyan("projections", "status", name, "--json")
        assert code == 0, out
        await conn.execute(
            "UPDATE projection_positions SET state = 'failed', error = 'boom', "
            "error_position = 1 WHERE name = $1",
            name,
        )
        code, out = await banyan("projections", "status", name, "--json")
    finally:
        await conn.execute("DELETE FROM projection_positions WHERE name = $1", name)
        await conn.close()
    assert code == 1, out
    [found] = json.loads(out)
    assert found["state"] == "failed" and found["healthy"] is False and found["error"] == "boom"
