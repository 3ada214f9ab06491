"""Sign-in through the gateway: an attacker elsewhere cannot lock out the real user.

Failures are throttled per (email, client address) with growing delays, sign-in attempts per
address whatever token is presented, and the address is the real peer unless a configured
proxy vouches for another with `X-Forwarded-For`.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from auth import service as auth_service
from auth.resources import resources
from gateway.app import create_app
from gateway.registry import from_services
from pipelines.devserver import available
from pipelines.http import HttpServer
from pipelines.settings import Settings
from tests.tcp_proxy import free_port

LIMIT = 20  # sign-in attempts per address per minute at the gateways below
SIGN_IN = "/api/auth/authenticate"
SIGN_IN_GQL = "mutation($in: AuthenticateInput!) { authenticate(input: $in) { user { email } } }"


class Clock:
    """The throttle's clock, moved by the tests instead of waiting out its delays."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
async def auth(settings: Settings) -> AsyncIterator[None]:
    instance = auth_service.instance(settings.model_copy(update={"auth_port": free_port()}))
    await instance.start()
    yield
    await instance.stop()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(resources().throttle, "clock", clock)
    return clock


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


@pytest.fixture(scope="module")
async def exposed(settings: Settings, auth: None) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with no configured proxy (the default), limited to 6 sign-ins a minute."""
    async for client in serve(settings, "", 6):
        yield client


@pytest.fixture
async def fresh_window() -> None:
    """Rate-limit windows are whole minutes: start a test well inside one."""
    left = 60 - time.time() % 60
    if left < 15:
        await asyncio.sleep(left + 0.1)


async def create_user(http: httpx.AsyncClient, token: Any) -> tuple[str, str]:
    email, password = f"{uuid.uuid4().hex[:12]}@example.com", f"pw-{uuid.uuid4().hex}"
    created = await http.post(
        "/api/auth/create-user",
        json={"email": email, "password": password, "name": "Alice"},
        headers={"Authorization": f"Bearer {token('creator', 'auth:create-user')}"},
    )
    assert created.status_code == 200, created.text
    return email, password


def address() -> str:
    """A client address of its own for each test (windows and throttles are per address)."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{n // 250 % 250}.{n // 62500 % 250 + 1}"


async def sign_in(
    http: httpx.AsyncClient, email: str, password: str, at: str, **headers: str
) -> httpx.Response:
    body = {"email": email, "password": password}
    return await http.post(SIGN_IN, json=body, headers={"X-Forwarded-For": at, **headers})


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], response.headers.get("Retry-After", "")


async def test_an_attacker_elsewhere_does_not_lock_out_the_user(
    behind_proxy: httpx.AsyncClient, token: Any, fresh_window: None
) -> None:
    email, password = await create_user(behind_proxy, token)
    attacker, alice = address(), address()
    codes = [(await sign_in(behind_proxy, email, "guess", attacker)).status_code for _ in range(8)]
    assert codes[:3] == [401, 401, 401] and 429 in codes
    for _ in range(2):
        signed_in = await sign_in(behind_proxy, email, password, alice)
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["user"]["email"] == email


async def test_failures_from_one_address_wait_growing_delays(
    behind_proxy: httpx.AsyncClient, token: Any, clock: Clock, fresh_window: None
) -> None:
    email, password = await create_user(behind_proxy, token)
    attacker = address()
    for _ in range(3):  # a few mistakes cost nothing
        assert (await sign_in(behind_proxy, email, "guess", attacker)).status_code == 401
    waits = []
    for _ in range(3):
        assert (await sign_in(behind_proxy, email, "guess", attacker)).status_code == 401
        refused = await sign_in(behind_proxy, email, password, attacker)  # even the right one
        status, code, retry_after = refusal(refused)
        assert (status, code) == (429, "RATE_LIMIT_EXCEEDED")
        assert refused.json()["error"]["details"]["retryAfter"] == int(retry_after)
        waits.append(int(retry_after))
        clock.now += int(retry_after)
    assert waits == [2, 4, 8]
    assert (await sign_in(behind_proxy, email, password, attacker)).status_code == 200


async def test_a_token_does_not_lift_the_per_address_limit_on_sign_in(
    behind_proxy: httpx.AsyncClient, token: Any, fresh_window: None
) -> None:
    sprayer = address()
    bearer = {"Authorization": f"Bearer {token(f'sprayer-{uuid.uuid4().hex}', 'orders:read')}"}
    statuses = []
    for _ in range(LIMIT + 1):  # one guess for each of many emails
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        statuses.append(await sign_in(behind_proxy, email, "guess", sprayer, **bearer))
    assert [r.status_code for r in statuses] == [401] * LIMIT + [429]
    assert refusal(statuses[-1])[:2] == (429, "RATE_LIMIT_EXCEEDED")
    assert int(refusal(statuses[-1])[2]) >= 1
    anonymous = await sign_in(behind_proxy, "x@example.com", "guess", sprayer)
    assert anonymous.status_code == 429
    elsewhere = await sign_in(behind_proxy, "x@example.com", "guess", address(), **bearer)
    assert elsewhere.status_code == 401


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    exposed: httpx.AsyncClient, behind_proxy: httpx.AsyncClient, token: Any, fresh_window: None
) -> None:
    email, _ = await create_user(behind_proxy, token)
    statuses = [
        (await sign_in(exposed, email, "guess", address())).status_code for _ in range(5)
    ]  # the throttle counts the real peer's failures, whatever the header says
    assert statuses == [401, 401, 401, 401, 429]
    spray = [
        await sign_in(exposed, f"{uuid.uuid4().hex[:12]}@example.com", "guess", address())
        for _ in range(2)
    ]  # and so does the gateway's per-address limit: 6 a minute from 127.0.0.1
    assert [r.status_code for r in spray] == [401, 429]
    assert refusal(spray[-1])[1] == "RATE_LIMIT_EXCEEDED"


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
        found = available(settings.model_copy(update=update))
        return next(argv for name, argv, _ in found if name == "gateway")

    assert "--no-proxy-headers" in gateway("")
    assert "--forwarded-allow-ips=10.0.0.0/8" in gateway("10.0.0.0/8")


async def test_graphql_sign_in_is_throttled_and_limited_alike(
    behind_proxy: httpx.AsyncClient, token: Any, clock: Clock, fresh_window: None
) -> None:
    email, password = await create_user(behind_proxy, token)
    attacker, alice = address(), address()
    bearer = f"Bearer {token(f'gql-sprayer-{uuid.uuid4().hex}', 'orders:read')}"

    async def sign_in_gql(email: str, password: str, at: str) -> dict[str, Any]:
        variables = {"in": {"email": email, "password": password}}
        response = await behind_proxy.post(
            "/graphql",
            json={"query": SIGN_IN_GQL, "variables": variables},
            headers={"X-Forwarded-For": at, "Authorization": bearer},
        )
        return dict(response.json())

    def code(body: dict[str, Any]) -> str:
        return str(body["errors"][0]["extensions"]["code"]) if "errors" in body else "OK"

    failures = [code(await sign_in_gql(email, "guess", attacker)) for _ in range(4)]
    assert failures == ["INVALID_CREDENTIALS"] * 4
    assert code(await sign_in_gql(email, password, attacker)) == "RATE_LIMIT_EXCEEDED"
    signed_in = await sign_in_gql(email, password, alice)
    assert signed_in["data"]["authenticate"]["user"]["email"] == email
    sprayed = [
        code(await sign_in_gql(f"{uuid.uuid4().hex[:12]}@example.com", "guess", attacker))
        for _ in range(LIMIT - 5)
    ]
    assert sprayed == ["INVALID_CREDENTIALS"] * (LIMIT - 5)
    assert code(await sign_in_gql(email, "guess", alice)) == "INVALID_CREDENTIALS"
    assert code(await sign_in_gql("x@example.com", "guess", attacker)) == "RATE_LIMIT_EXCEEDED"
