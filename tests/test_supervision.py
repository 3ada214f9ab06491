"""Background tasks never die silently: a failure is logged, restarted and reported."""

import asyncio
import logging

import asyncpg
import httpx

from gateway.app import create_app
from pipelines import Service, instance
from pipelines.database import create_pool
from pipelines.http import HttpServer
from pipelines.status_report import _health

flaky = Service("flaky")
runs = {"wobble": 0}
restarted = asyncio.Event()


@flaky.background
async def wobble(_instance: instance.ServiceInstance) -> None:
    runs["wobble"] += 1
    if runs["wobble"] == 1:
        raise RuntimeError("wobble broke")
    restarted.set()
    await asyncio.Event().wait()


def quiet(settings):
    return settings.model_copy(update={"relay_enabled": False, "announce_enabled": False})


async def test_a_failing_background_task_is_restarted_and_reported(settings, caplog) -> None:
    running = flaky.instance(quiet(settings))
    await running.start()
    try:
        await asyncio.wait_for(restarted.wait(), 10)
        health = await running.health()
        assert health["status"] == "degraded"
        assert health["failing"] == {"wobble": "RuntimeError: wobble broke"}
        logged = [r for r in caplog.records if "wobble" in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # with its traceback
        assert logged[0].levelno == logging.ERROR

        running.supervisor.recovered_after = 0.0  # the restart has run long enough
        assert (await running.health())["status"] == "ok"
    finally:
        await running.stop()


async def test_start_up_waits_for_postgresql_whatever_it_answers(settings, monkeypatch) -> None:
    refusals: list[int] = []

    async def crowded(config):
        if not refusals:
            refusals.append(1)
            raise asyncpg.TooManyConnectionsError("sorry, too many clients already")
        return await create_pool(config)

    monkeypatch.setattr(instance, "create_pool", crowded)
    running = Service("crowded").instance(quiet(settings))
    await asyncio.wait_for(running.start(), 20)
    try:
        assert refusals == [1] and running.runtime.pool is not None
    finally:
        await running.stop()


async def test_the_gateway_reports_a_failing_registry_follower(settings) -> None:
    loads = []

    async def garbled(_rpc):
        loads.append(1)
        if len(loads) == 1:
            raise ValueError("registry garbled")
        return []

    app = create_app(settings, garbled)
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            health = (await client.get("/health")).json()
        assert len(loads) == 2  # restarted: the second load answered
        assert health["status"] == "degraded"
        assert health["failing"] == {"registry": "ValueError: registry garbled"}
    finally:
        await server.stop()
        await app.state.gateway.stop()


def test_status_names_each_failing_task() -> None:
    body = {"status": "degraded", "failing": {"projection order_summary": "KeyError: 'x'"}}
    assert _health(body) == "degraded: projection order_summary failing (KeyError: 'x')"
    assert _health({"status": "ok", "failing": {}}) == "ok"
