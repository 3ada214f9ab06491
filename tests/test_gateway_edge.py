"""The REST contract routes are answered in front of the FastAPI app's layers (`gateway.edge`):
each answer still carries what those layers give every other answer (CORS, GZip, correlation,
HEAD as GET, metrics, access line), and a CORS preflight still reaches the app.
"""

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import Message, Receive, Scope, Send

from examples.orders import service as orders_service
from gateway.app import GZIP_ABOVE_BYTES, cors_options
from gateway.finishing import Finishing
from pipelines.settings import Settings
from tests.gateway_rig import running_gateway
from tests.test_gateway import ALL, ITEMS, bearer

SHOP = "https://shop.example.com"
LONG_NAME = "n" * 1500  # a 404 that names it is over GZIP_ABOVE_BYTES


@pytest.fixture(scope="module")
async def http(settings, orders) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(settings, [orders_service]) as (_, client):
        yield client


# --- CORS and GZip, as Starlette's layers give them -------------------------------------------


async def through_starlette(
    options: dict[str, Any], request: list[tuple[bytes, bytes]], answer: Message
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """What the app's CORS and GZip layers make of `answer` (start message, with its body)."""

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": answer["headers"]})
        await send({"type": "http.response.body", "body": answer["body"]})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    app = GZipMiddleware(CORSMiddleware(inner, **options), minimum_size=GZIP_ABOVE_BYTES)
    await app({"type": "http", "method": "GET", "path": "/", "headers": request}, receive, send)
    return sent[0]["headers"], sent[1]["body"]


@pytest.mark.unit
@pytest.mark.parametrize("allowed", ["*", SHOP])
@pytest.mark.parametrize("origin", [None, SHOP, "https://elsewhere.example"])
@pytest.mark.parametrize("size", [10, GZIP_ABOVE_BYTES - 1, GZIP_ABOVE_BYTES, 200_000])
@pytest.mark.parametrize("accepted", [None, "gzip, deflate", "br"])
async def test_the_edge_finishes_answers_as_the_apps_layers_do(
    allowed: str, origin: str | None, size: int, accepted: str | None
) -> None:
    options = cors_options(Settings(cors_origins=allowed))
    request = [(b"origin", origin.encode())] if origin else []
    if accepted is not None:
        request.append((b"accept-encoding", accepted.encode()))
    body = b'{"a":"' + b"x" * (size - 8) + b'"}'
    headers = [(b"x-cache", b"hit"), (b"content-length", str(len(body)).encode()),
               (b"content-type", b"application/json"), (b"x-correlation-id", b"c-1")]  # fmt: skip
    expected = await through_starlette(options, request, {"headers": list(headers), "body": body})
    finished = await Finishing.of(options, GZIP_ABOVE_BYTES).finish(
        headers, body, origin, accepted or ""
    )
    assert (headers, finished) == expected


# --- over HTTP ---------------------------------------------------------------------------------


async def test_head_is_answered_as_get_without_a_body(http, token) -> None:
    auth = bearer(token("edge-head", *ALL))
    placed = await http.post(
        "/api/orders/place-order", json={"customerId": "edge-head", "items": ITEMS}, headers=auth
    )
    query = {"params": {"orderId": placed.json()["orderId"]}, "headers": auth}
    got = await http.get("/api/orders/get-order", **query)
    head = await http.head("/api/orders/get-order", **query)
    assert (head.status_code, head.content) == (got.status_code, b"")
    assert head.headers["content-length"] == got.headers["content-length"] != "0"
    command = await http.head("/api/orders/place-order", headers=auth)
    assert (command.status_code, command.headers["allow"]) == (405, "POST")


async def test_a_preflight_reaches_the_cors_layer_and_other_options_are_refused(http) -> None:
    preflight = await http.options(
        "/api/orders/place-order",
        headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    plain = await http.options("/api/orders/place-order", headers={"Origin": SHOP})
    assert (plain.status_code, plain.headers["allow"]) == (405, "POST")
    assert plain.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert plain.headers["access-control-allow-origin"] == "*"


async def test_answers_over_a_kilobyte_are_compressed_for_those_who_accept_it(http) -> None:
    path = f"/api/orders/{LONG_NAME}"
    packed = await http.get(path, headers={"Accept-Encoding": "gzip", "Origin": SHOP})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Origin, Accept-Encoding"
    assert int(packed.headers["content-length"]) < GZIP_ABOVE_BYTES
    assert packed.headers["access-control-allow-origin"] == "*"
    assert "X-Correlation-ID" in packed.headers["access-control-expose-headers"]
    plain = await http.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Origin, Accept-Encoding"
    assert packed.json()["error"]["message"] == plain.json()["error"]["message"]  # decoded
    error = plain.json()["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["correlationId"] == plain.headers["x-correlation-id"]


async def test_contract_requests_are_counted_timed_and_logged(http, caplog) -> None:
    def counted(text: str) -> float:
        line = 'gateway_requests_total{method="GET",protocol="http",status="404"}'
        return next((float(row.split()[-1]) for row in text.splitlines()
                     if row.startswith(line)), 0.0)  # fmt: skip

    before = counted((await http.get("/metrics")).text)
    with caplog.at_level(logging.INFO, logger="banyan.access"):
        missing = await http.get("/api/orders/no-such-query", params={"q": "1"})
    assert counted((await http.get("/metrics")).text) == before + 1
    (line,) = [r for r in caplog.records if r.name == "banyan.access" and "no-such" in r.message]
    assert (line.method, line.path, line.status) == ("GET", "/api/orders/no-such-query?q=1", 404)
    assert line.correlationId == missing.headers["x-correlation-id"]
