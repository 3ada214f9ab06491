"""Sign-in through the gateway: an attacker elsewhere cannot lock out the real user.

Failures are throttled per (email, client address) with growing delays, sign-in attempts per
address whatever token is presented, and the address is the real peer unless a configured
proxy vouches for another with `X-Forwarded-For`.
"""

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from auth import service as auth_service
from gateway.app import create_app
from gateway.registry import from_services
from pipelines.devserver import available
from pipelines.http import HttpServer
from pipelines.settings import Settings
from tests.tcp_proxy import free_port

LIMIT = 20  # sign-in attempts per address per minute at the gateways below
SIGN_IN = "/api/auth/authenticate"


@pytest.fixture(scope="module")
async def auth(settings: Settings) -> AsyncIterator[None]:
    instance = auth_service.instance(settings.model_copy(update={"auth_port": free_port()}))
    await instance.start()
    yield
    await instance.stop()


async def serve(settings: Settings, trusted: str, limit: int) -> AsyncIterator[httpx.AsyncClient]:
    updates = {
        "forwarded_allow_ips": trusted,
        "rate_limit_anonymous": limit,
        "cache_prefix": f"{settings.cache_prefix}-{uuid.uuid4().hex[:8]}",  # windows of its own
    }
    app = create_app(settings.model_copy(update=updates), from_services([auth_service]))
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0, forwarded_allow_ips=trusted)
    await server.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
        yield c
    await server.stop()
    await app.state.gateway.stop()


@pytest.fixture(scope="module")
async def behind_proxy(settings: Settings, auth: None) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that believes `X-Forwarded-For` from 127.0.0.1, its configured proxy."""
    async for client in serve(settings, "127.0.0.1", LIMIT):
        yield client


@pytest.fixture
def fresh_window() -> None:
    """Rate-limit windows are whole minutes: start a test well inside one."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.1)


def address() -> str:
    """A client address of its own for each test (windows and throttles are per address)."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{n // 250 % 250}.{n // 62500 % 250 + 1}"


async def sign_in(
    http: httpx.AsyncClient, email: str, password: str, at: str, **headers: str
) -> httpx.Response:
    body = {"email": email, "password": password}
    return await http.post(SIGN_IN, json=body, headers={"X-Forwarded-For": at, **headers})


async def test_forwarded_for_from_a_configured_proxy_is_honoured(
    behind_proxy: httpx.AsyncClient, fresh_window: None
) -> None:
    busy, other = address(), address()
    for _ in range(LIMIT):
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        assert (await sign_in(behind_proxy, email, "guess", busy)).status_code == 401
    assert (await sign_in(behind_proxy, "x@example.com", "guess", busy)).status_code == 429
    assert (await sign_in(behind_proxy, "x@example.com", "guess", other)).status_code == 401


def test_banyan_up_believes_forwarded_for_only_from_configured_proxies(settings: Settings) -> None:
    def gateway(trusted: str) -> list[str]:
        update = {"forwarded_allow_ips": trusted}
        return dict(available(settings.model_copy(update=update)))["gateway"]

    assert "--no-proxy-headers" in gateway("")
    assert "--forwarded-allow-ips=10.0.0.0/8" in gateway("10.0.0.0/8")
