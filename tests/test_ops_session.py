"""A `banyan up` session read the way a log shipper reads it: every line it prints.

The session serves requests, a failing handler (dead-lettered, a 500), a command that outlives
its timeout (a 504) and a WebSocket authenticated by a token in its URL.
"""

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from pipelines.testing.isolation import create_isolated_env, drop_isolated_env
from tests.conftest import eventually
from tests.tcp_proxy import free_port, free_ports

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent
ITEMS = [{"sku": "yuzu", "quantity": 1, "unitPrice": "1.50"}]
MODULES = ("auth", "discovery", "examples.orders", "tests.ops_probe")
ROUTES = ("/api/orders/place-order", "/api/sample/explode", "/api/sample/dawdle")


@pytest.fixture
async def isolated() -> AsyncIterator[dict[str, str]]:
    """A vhost, schema and cache prefix of the session's own: the run's other instances of
    the same services (the sample service's, for one) take none of its messages."""
    env = create_isolated_env()
    env["CACHE_PREFIX"] = f"banyan-ops-{env['BANYAN_TEST_RUN']}"
    yield env
    await drop_isolated_env(env, env["CACHE_PREFIX"])


def session_env(isolated: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **isolated,
        "SERVICE_MODULES": ",".join(MODULES),
        "ANNOUNCE_ENABLED": "true",
        "HEARTBEAT_INTERVAL": "2",
        "AUTH_PORT": str(free_port()),
        "DISCOVERY_PORT": str(free_port()),
        "GATEWAY_PORT": str(free_port()),
        "METRICS_PORT_BASE": str(free_ports(len(MODULES))),  # one port per service, all free
        "COMMAND_TIMEOUT": "1",
        "DATABASE_POOL_SIZE": "3",
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }


@contextlib.asynccontextmanager
async def session(env: dict[str, str], out: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with out.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipelines.cli", "up", "--raw", cwd=ROOT, env=env,
            stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 60)


async def routed(gateway: str, process: asyncio.subprocess.Process, out: Path) -> None:
    async with httpx.AsyncClient(base_url=gateway, timeout=5) as http:

        async def ready() -> bool:
            assert process.returncode is None, f"`banyan up` exited: {out}"
            try:
                paths = (await http.get("/openapi.json")).json()["paths"]
            except (httpx.HTTPError, ValueError):
                return False
            return all(route in paths for route in ROUTES)

        await eventually(ready, timeout=150, what=f"every route in the gateway ({out})")


def lines_of(out: Path) -> list[dict[str, Any]]:
    text = out.read_text()
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(parsed[-1], dict), line
    return parsed


async def test_a_banyan_up_session_prints_only_json_and_no_token(token, isolated) -> None:
    env = session_env(isolated)
    gateway = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    bearer = token("ops-session", "orders:place", "orders:read")
    out = Path(tempfile.mkdtemp()) / "up.log"
    async with session(env, out) as process:
        await routed(gateway, process, out)
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
            auth = {"Authorization": f"Bearer {bearer}"}
            placed = await http.post(
                "/api/orders/place-order", json={"items": ITEMS},
                headers={**auth, "X-Correlation-ID": "ops-placed"},
            )  # fmt: skip
            assert placed.status_code == 200, placed.text
            failed = await http.post(
                "/api/sample/explode", json={"note": "ops"},
                headers={"X-Correlation-ID": "ops-explode"},
            )  # fmt: skip
            assert failed.status_code == 500, failed.text
            late = await http.post(
                "/api/sample/dawdle", json={"seconds": 3},
                headers={"X-Correlation-ID": "ops-late"},
            )  # fmt: skip
            assert late.status_code == 504, late.text
            tokened = await http.get(f"/api/orders/list-orders?token={bearer}", headers=auth)
            assert tokened.status_code in (200, 400), tokened.text
        ws_url = gateway.replace("http", "ws") + f"/ws?token={bearer}"
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] in ("authenticated", "pong")
        # the dead letter's line and the access lines are written by now or soon
        await eventually(lambda: "dead-lettered" in out.read_text(), timeout=20,
                         what="the failing handler's line")  # fmt: skip
        os.killpg(process.pid, signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)

    text = out.read_text()
    assert bearer not in text
    lines = lines_of(out)
    assert len(lines) > 20
    assert "\\u001b" not in text and "\x1b" not in text  # no colour codes, escaped or not

    access = [line for line in lines if line.get("logger") == "banyan.access"]
    placed_line = next(line for line in access if line["correlationId"] == "ops-placed")
    assert placed_line["method"] == "POST" and placed_line["path"] == "/api/orders/place-order"
    assert placed_line["status"] == 200 and placed_line["durationMs"] > 0
    assert any("token=***REDACTED***" in line["path"] for line in access)

    answers = {line["correlationId"]: line for line in lines if "httpStatus" in line
               and line.get("logger") == "banyan.gateway"}  # fmt: skip
    assert answers["ops-late"]["httpStatus"] == 504 and answers["ops-late"]["code"] == "TIMEOUT"
    explode = answers["ops-explode"]
    assert explode["httpStatus"] == 500 and explode["level"] == "error"

    failure = next(line for line in lines if line["message"].startswith("dead-lettered"))
    assert failure["correlationId"] == "ops-explode" and failure["messageType"] == "Explode"
    assert failure["messageId"] and failure["retryCount"] >= 1
    assert "RuntimeError: boom: ops" in failure["error"] and "Traceback" in failure["error"]

    chatter = {line["logger"].split(".")[0] for line in lines if line["level"] == "info"}
    assert chatter <= {"banyan", "uvicorn", "faststream", "auth", "discovery"}, chatter


def test_banyan_up_prefixes_each_line_for_people_and_not_in_raw_mode(capsys) -> None:
    from pipelines.devserver import Output

    line = '{"message": "hello"}\n'
    Output(["orders", "gateway"], raw=False).line("orders", line)
    Output(["orders", "gateway"], raw=True).line("orders", line)
    Output(["orders"], raw=True).say("started orders")
    prefixed, raw, own = capsys.readouterr().out.splitlines()
    assert prefixed == 'orders  | {"message": "hello"}' and raw == '{"message": "hello"}'
    assert json.loads(own)["message"] == "started orders" and json.loads(own)["service"] == "up"
