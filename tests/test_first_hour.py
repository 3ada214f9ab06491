"""A person's first hour: `make run`, then `examples/first_hour.py`, then GraphiQL in a browser."""

import asyncio
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from examples.first_hour import FirstHour
from tests.conftest import eventually
from tests.tcp_proxy import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("admin@first-hour.example.com", "first-hour-admin-pw")
SCREENSHOT = str(Path(tempfile.gettempdir()) / "banyan-graphiql.png")  # the last run's page
ROUTES = ("/api/orders/place-order", "/api/auth/authenticate", "/api/inventory/add-stock")
pytestmark = pytest.mark.timeout(300)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, without the network Chromium would phone home to, and with nothing downloaded.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Typing into CodeMirror would fight its bracket completion; a user pastes, the page agrees.
SET_EDITORS = """([query, headers]) => {
    const [editor] = document.querySelectorAll(".graphiql-query-editor .CodeMirror");
    editor.CodeMirror.setValue(query);
    const shown = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";
    document.querySelector(shown).CodeMirror.setValue(headers);  // the page opens on Headers
}"""


@dataclass
class Platform:
    gateway: str
    discovery: str
    log: Path


def platform_env() -> dict[str, str]:
    env = {**os.environ, "ANNOUNCE_ENABLED": "true", "HEARTBEAT_INTERVAL": "2"}
    env.pop("SERVICE_MODULES")  # every platform service and example, as `make run` has them
    return env | {
        "ADMIN_EMAIL": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "AUTH_PORT": str(free_port()),
        "DISCOVERY_PORT": str(free_port()),
        "GATEWAY_PORT": str(free_port()),
        "DATABASE_POOL_SIZE": "3",  # six processes share the server's connection limit
        "RATE_LIMIT_ANONYMOUS": "60",  # the readiness polls below sign in anonymously too
    }


@pytest.fixture(scope="module")
async def platform() -> AsyncIterator[Platform]:
    env = platform_env()
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as log:
        process = await asyncio.create_subprocess_exec(
            "make", "--no-print-directory", "run", cwd=ROOT, env=env,
            stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    up = Platform(
        f"http://127.0.0.1:{env['GATEWAY_PORT']}",
        f"http://127.0.0.1:{env['DISCOVERY_PORT']}",
        Path(log.name),
    )
    try:
        await ready(up, process)
        yield up
    finally:
        await stop(process, up.log)


async def stop(process: asyncio.subprocess.Process, log: Path) -> None:
    """Ctrl-C's signal to `make run` and everything it started; none of them may linger."""
    os.killpg(process.pid, signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), 60)
    assert code in (0, -signal.SIGTERM), f"`make run` ended with {code}; its output: {log}"

    def group_gone() -> bool:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(group_gone, timeout=30, what=f"every platform process to stop ({log})")
    os.unlink(log)


async def ready(up: Platform, process: asyncio.subprocess.Process) -> None:
    """Routes for every service, and the administrator able to sign in."""
    async with httpx.AsyncClient(base_url=up.gateway, timeout=5) as http:

        async def routed() -> bool:
            assert process.returncode is None, f"`make run` exited: {up.log.read_text()[-3000:]}"
            try:
                paths = (await http.get("/openapi.json")).json()["paths"]
            except (httpx.HTTPError, ValueError):
                return False
            return all(route in paths for route in ROUTES)

        async def admin_signs_in() -> bool:
            body = {"email": ADMIN[0], "password": ADMIN[1]}
            return (await http.post("/api/auth/authenticate", json=body)).status_code == 200

        await eventually(routed, timeout=120, what=f"every route in the gateway ({up.log})")
        await eventually(admin_signs_in, timeout=30, what="the administrator to be created")


async def test_a_new_users_first_hour(platform: Platform) -> None:
    said: list[str] = []
    hour = FirstHour(platform.gateway, platform.discovery, *ADMIN, say=said.append)
    seen = await hour.run()
    assert seen["refusals"] == ("CONFLICT", "POLICY_VIOLATION"), said
    assert seen["hidden from bob"] == "NOT_FOUND", said
    assert seen["answered during rebuild"] >= 1, said
    assert {"auth", "discovery", "orders", "inventory", "fulfilment"} <= set(seen["services"])
    assert len(said) >= 12, said


async def test_graphiql_in_a_browser_runs_a_query_with_a_token(platform: Platform) -> None:
    from playwright.async_api import async_playwright, expect

    async with httpx.AsyncClient(base_url=platform.gateway, timeout=30) as http:
        body = {"email": ADMIN[0], "password": ADMIN[1]}
        token = (await http.post("/api/auth/authenticate", json=body)).json()["accessToken"]
        order = {
            "customerId": "graphiql",
            "items": [{"sku": "tea", "quantity": 1, "unitPrice": "2"}],
        }
        placed = await http.post(
            "/api/orders/place-order", json=order, headers={"Authorization": f"Bearer {token}"}
        )
        order_id = placed.json()["orderId"]
    query = f'{{ getOrder(input: {{orderId: "{order_id}"}}) {{ orderId customerId status }} }}'
    headers = json.dumps(
        {"Authorization": f"Bearer {token}", "X-Min-Position": placed.headers["x-event-position"]}
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{platform.gateway}/graphql")
            await page.wait_for_selector(".graphiql-query-editor .CodeMirror")
            await page.evaluate(SET_EDITORS, [query, headers])
            await page.click(".graphiql-execute-button")
            result = page.locator(".result-window")
            await expect(result).to_contain_text(f'"orderId": "{order_id}"', timeout=20_000)
            await expect(result).to_contain_text('"customerId": "graphiql"')
            await page.screenshot(path=SCREENSHOT)
        finally:
            await browser.close()
