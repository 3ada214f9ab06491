"""Bad input against a served gateway: nothing breaks it, and nothing bad reaches the bus.

Schemathesis draws requests (valid and invalid) from the gateway's own `/openapi.json`: every
answer is below 500 and every error is in the platform's fixed body. The explicit cases go
both to `orders` and to `orders-quiet`, a copy of its contracts whose queues nobody consumes:
whatever the gateway published there would stay, so unchanged message counts prove that a
refused request never reached the bus; the orders event log must not grow either.
"""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import httpx
import hypothesis
import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase

from examples.orders import service as orders_service
from gateway.app import create_app
from gateway.registry import from_services
from gateway.state import RegistrySource
from pipelines.http import HttpServer
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from pipelines.topology import queue_for
from tests.test_gateway import ALL, ITEMS, bearer, close

QUIET = "orders-quiet"
ERROR_KEYS = {"code", "message", "details", "correlationId"}
EXAMPLES = 20  # drawn requests per operation and generation mode
# NUL characters are left out of the drawn data (test_nul_character_is_not_a_server_error)
FUZZ_CONFIG = schemathesis.Config.from_dict({"generation": {"allow-x00": False}})
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
MB = 1 << 20

Token = Callable[..., str]  # the `token` fixture: user id, permissions, ttl -> a signed token
Snapshot = tuple[int, dict[str, int]]  # orders events in the log, messages in each quiet queue


def with_quiet_copy(source: RegistrySource) -> RegistrySource:
    async def load(rpc: RpcClient) -> list[Any]:
        entries = await source(rpc)
        return entries + [dataclasses.replace(e, name=QUIET) for e in entries]

    return load


def quiet_queues() -> list[str]:
    contracts = orders_service.registration("static").contracts
    return [queue_for(QUIET, c.kind, c.message_type) for c in contracts if c.kind != "event"]


@dataclass
class Served:
    client: httpx.AsyncClient
    url: str
    snapshot: Callable[[], Awaitable[Snapshot]]


async def _message_count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


@pytest.fixture(scope="module")
async def bus_snapshot(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[Snapshot]]]:
    """Declare the quiet queues; give a way to read them and the orders event count."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    channel = await connection.channel()
    for name in quiet_queues():
        await channel.declare_queue(name)
    database = await asyncpg.connect(settings.database_url)

    async def snapshot() -> Snapshot:
        events = await database.fetchval(
            f'SELECT count(*) FROM "{settings.database_schema}".events '
            "WHERE aggregate_type = 'Order'"
        )
        queues = {name: await _message_count(channel, name) for name in quiet_queues()}
        return int(events), queues

    yield snapshot
    for name in quiet_queues():
        await channel.queue_delete(name)
    await connection.close()
    await database.close()


@pytest.fixture(scope="module")
async def served(
    settings: Settings, orders: object, bus_snapshot: Callable[[], Awaitable[Snapshot]]
) -> AsyncIterator[Served]:
    limits = {"rate_limit_per_user": 1_000_000, "rate_limit_anonymous": 1_000_000}
    app = create_app(
        settings.model_copy(update={"command_timeout": 2.0, "query_timeout": 2.0, **limits}),
        with_quiet_copy(from_services([orders_service])),
    )
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    client = httpx.AsyncClient(base_url=url, timeout=30)
    yield Served(client, url, bus_snapshot)
    await close(app, server, client)


def assert_error_body(body: bytes, correlation_id: str | None) -> dict[str, Any]:
    """An error answer in the platform's fixed body, never a stack trace."""
    assert b"Traceback" not in body, body[:500]
    document = json.loads(body)
    assert set(document) == {"error"}, document
    error: dict[str, Any] = document["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str), error
    assert error["correlationId"] == correlation_id, (error, correlation_id)
    return error


# --- schemathesis over /openapi.json -----------------------------------------------------------


def check_answer(response: schemathesis.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        echoed = response.headers.get("x-correlation-id", [None])[-1]
        assert_error_body(response.content, echoed)


def fuzz(operation: Any, mode: schemathesis.GenerationMode, url: str, token: str) -> None:
    session = requests.Session()

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # report the first failure as drawn
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        check_answer(case.call(base_url=url, session=session, headers=bearer(token), timeout=30))

    try:
        run()
    finally:
        session.close()


async def test_schemathesis_finds_no_5xx_and_only_fixed_error_bodies(
    served: Served, token: Token
) -> None:
    spec = (await served.client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec, config=FUZZ_CONFIG)
    operations = [
        schema[path][method.upper()]
        for path, methods in spec["paths"].items()
        if path.startswith("/api/orders/")  # the quiet copy never answers
        for method in methods
    ]
    assert {o.path for o in operations} >= {"/api/orders/place-order", "/api/orders/get-order"}
    valid = token("fuzz-user", *ALL)
    for operation in operations:
        for mode in MODES:
            await asyncio.to_thread(fuzz, operation, mode, served.url, valid)


# --- explicit bad input ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A bad request to `/api/{service}/...` and the gateway's answer to it."""

    method: str
    path: str  # `{service}` stands for orders, then orders-quiet
    status: int
    code: str
    auth: str = "valid"  # see `authorization`
    body: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send the body without a Content-Length


def order(**changes: Any) -> bytes:
    return json.dumps({"customerId": "fuzz", "items": ITEMS, **changes}).encode()


PLACE = "/api/{service}/place-order"
GET = "/api/{service}/get-order"

CASES: dict[str, Bad] = {
    # malformed JSON
    "not-json": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b"{oops"),
    "truncated-json": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=order()[:-7]),
    "json-array": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b"[1, 2]"),
    "json-string": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b'"order"'),
    "json-null": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b"null"),
    "not-utf8": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b"\xff\xfe{}"),
    # what Python's parser takes but the services' refuse (the gateway forwarded them, and
    # the service answered 400 from behind the bus): not JSON, or text that is no Unicode
    "nan-number": Bad("POST", PLACE, 400, "VALIDATION_ERROR",
                      body=order(items=[{"sku": "a", "quantity": 1, "unitPrice": float("nan")}])),
    "overflowing-number": Bad("POST", PLACE, 400, "VALIDATION_ERROR",
                              body=order().replace(b'"0.40"', b'1e400')),
    "lone-surrogate": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=order(customerId="\ud800")),
    "bad-min-position": Bad(
        "GET", GET, 400, "VALIDATION_ERROR", params={"orderId": "o"},
        headers={"X-Min-Position": "soon"},
    ),
    # huge bodies
    "huge-declared": Bad("POST", PLACE, 413, "PAYLOAD_TOO_LARGE", body=b"x" * (2 * MB)),
    "huge-json": Bad(
        "POST", PLACE, 413, "PAYLOAD_TOO_LARGE",
        body=order(customerId="c" * (2 * MB)),
    ),
    "huge-chunked": Bad(
        "POST", PLACE, 413, "PAYLOAD_TOO_LARGE", body=b" " * (2 * MB), chunked=True
    ),
    # unknown routes and methods
    "unknown-operation": Bad("POST", "/api/{service}/no-such-thing", 404, "NOT_FOUND",
                             body=order()),
    "unknown-service": Bad("POST", "/api/nowhere/place-order", 404, "NOT_FOUND", body=order()),
    "unknown-path": Bad("GET", "/no/such/path", 404, "NOT_FOUND"),
    "command-with-get": Bad("GET", PLACE, 405, "METHOD_NOT_ALLOWED"),
    "query-with-post": Bad("POST", GET, 405, "METHOD_NOT_ALLOWED", body=b"{}"),
    # missing and invalid tokens
    "no-token": Bad("POST", PLACE, 401, "NO_AUTH_HEADER", auth="none", body=order()),
    "no-token-query": Bad("GET", GET, 401, "NO_AUTH_HEADER", auth="none",
                          params={"orderId": "o"}),
    "garbage-token": Bad("POST", PLACE, 401, "INVALID_TOKEN", auth="garbage", body=order()),
    "bearer-without-token": Bad("POST", PLACE, 401, "INVALID_TOKEN", auth="empty",
                                body=order()),
    "basic-auth": Bad("POST", PLACE, 401, "INVALID_TOKEN", auth="basic", body=order()),
    "expired-token": Bad("POST", PLACE, 401, "TOKEN_EXPIRED", auth="expired", body=order()),
    "foreign-key": Bad("POST", PLACE, 401, "INVALID_TOKEN", auth="foreign", body=order()),
    "alg-none": Bad("POST", PLACE, 401, "INVALID_TOKEN", auth="unsigned", body=order()),
    "no-permission": Bad(
        "POST", PLACE, 403, "INSUFFICIENT_PERMISSIONS", auth="read-only", body=order()
    ),
}  # fmt: skip

SCHEMA_BREAKING: dict[str, Bad] = {
    "wrong-type-items": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=order(items="many")),
    "wrong-type-quantity": Bad(
        "POST", PLACE, 400, "VALIDATION_ERROR",
        body=order(items=[{"sku": "lime", "quantity": "two", "unitPrice": "0.40"}]),
    ),
    "wrong-type-customer": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=order(customerId=7)),
    "unknown-field": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=order(discount="100%")),
    "missing-fields": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b"{}"),
    "empty-body": Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b""),
    "not-a-number": Bad("POST", PLACE, 400, "VALIDATION_ERROR",
                        body=b'{"customerId": "c", "items": NaN}'),
    "missing-query-field": Bad("GET", GET, 400, "VALIDATION_ERROR"),
    "wrong-type-query": Bad("GET", "/api/{service}/list-orders", 400, "VALIDATION_ERROR",
                            params={"page": "first"}),
}  # fmt: skip

DEEP_NESTING = Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=b"[" * 100_000 + b"]" * 100_000)


def authorization(kind: str, token: Token) -> dict[str, str]:
    claims = {"sub": "fuzz", "permissions": list(ALL), "exp": 2**31}
    tokens: dict[str, Callable[[], str]] = {
        "valid": lambda: token("fuzz", *ALL),
        "read-only": lambda: token("fuzz", "orders:read"),
        "expired": lambda: token("fuzz", *ALL, ttl=-10),
        "garbage": lambda: "not.a.token",
        "foreign": lambda: jwt.encode(claims, "someone-else's-secret-key-32-bytes", "HS256"),
        "unsigned": lambda: jwt.encode(claims, "", "none"),
    }
    if kind == "none":
        return {}
    if kind == "empty":
        return {"Authorization": "Bearer"}
    if kind == "basic":
        return {"Authorization": "Basic ZnV6ejpmdXp6"}
    return bearer(tokens[kind]())


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def send(served: Served, bad: Bad, service: str, headers: dict[str, str]) -> Any:
    content = chunks(bad.body) if bad.chunked and bad.body else bad.body
    return await served.client.request(
        bad.method,
        bad.path.format(service=service),
        params=bad.params,
        headers={"Content-Type": "application/json", **headers, **bad.headers},
        content=content,
    )


async def assert_answers(served: Served, bad: Bad, headers: dict[str, str]) -> None:
    for service in ("orders", QUIET):
        response = await send(served, bad, service, headers)
        error = assert_error_body(response.content, response.headers.get("X-Correlation-ID"))
        assert (response.status_code, error["code"]) == (bad.status, bad.code), (service, error)


async def assert_refused(served: Served, bad: Bad, headers: dict[str, str]) -> None:
    before = await served.snapshot()
    await assert_answers(served, bad, headers)
    assert await served.snapshot() == before, "a refused request reached the bus"


@pytest.mark.parametrize("bad", CASES.values(), ids=CASES.keys())
async def test_bad_request_is_refused_before_the_bus(
    served: Served, token: Token, bad: Bad
) -> None:
    await assert_refused(served, bad, authorization(bad.auth, token))


async def test_schema_breaking_bodies_are_refused_before_the_bus(
    served: Served, token: Token
) -> None:
    """All at once: each one the gateway forwards waits for the quiet copy's timeout."""
    before = await served.snapshot()
    headers = authorization("valid", token)
    outcomes = await asyncio.gather(
        *(assert_answers(served, bad, headers) for bad in SCHEMA_BREAKING.values()),
        return_exceptions=True,
    )
    failed = {name: str(o) for name, o in zip(SCHEMA_BREAKING, outcomes, strict=True) if o}
    assert not failed, failed
    assert await served.snapshot() == before, "a refused request reached the bus"


async def test_deeply_nested_json_is_a_validation_error(served: Served, token: Token) -> None:
    await assert_refused(served, DEEP_NESTING, authorization("valid", token))


@pytest.mark.parametrize(
    "bad",
    [
        Bad("GET", GET, 404, "NOT_FOUND", params={"orderId": "o\x00"}),
        Bad("POST", PLACE, 400, "VALIDATION_ERROR", body=order(customerId="c\x00")),
    ],
    ids=["in-query", "in-body"],
)
async def test_nul_character_is_not_a_server_error(served: Served, token: Token, bad: Bad) -> None:
    response = await send(served, bad, "orders", authorization("valid", token))
    assert response.status_code < 500, response.text
