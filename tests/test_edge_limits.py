"""One caller cannot hurt the others: the gateway's limits at its edge, over real HTTP.

Introspection counts towards the GraphQL limits, answers have a size cap, every `/graphql`
request is rate limited, bodies are counted as they arrive (chunked ones too), nesting is
bounded, headers are checked, non-JSON REST bodies are refused, and a request the gateway
cannot publish does not count against a service's circuit breaker.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query, specified_rules, validate

from gateway.breaker import CLOSED, HALF_OPEN, Breaker
from gateway.graphql import limits
from gateway.invoke import Call, invoke
from pipelines.errors import PlatformError
from tests.test_gateway import ALL, ITEMS, bearer, close, serve
from tests.test_gateway_graphql import TransportWS, transport_ws

MB = 1 << 20
JSON = {"Content-Type": "application/json"}
FULL_INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
)
SCHEMA_FIELDS = "types { name kind fields { name type { name kind ofType { name } } } }"
ORDER = {"customerId": "edge", "items": ITEMS}
PLACE = "/api/orders/place-order"


@pytest.fixture(scope="module")
async def edge(settings, orders, sample_service) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app, server, client = await serve(
        settings, rate_limit_anonymous=100_000, rate_limit_per_user=100_000, query_timeout=3.0
    )
    yield app, client
    await close(app, server, client)


@pytest.fixture
def http(edge: tuple[Any, httpx.AsyncClient]) -> httpx.AsyncClient:
    return edge[1]


async def graphql(
    http: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return await http.post("/graphql", json={"query": query, **body}, headers=headers or {})


def error_code(response: httpx.Response) -> str:
    document = response.json()
    if "errors" in document:
        return str(document["errors"][0]["extensions"]["code"])
    return str(document["error"]["code"])


# --- introspection and answer size -------------------------------------------------------------


def aliased_schemas(copies: int) -> str:
    return "{ " + " ".join(f"s{i}: __schema {{ {SCHEMA_FIELDS} }}" for i in range(copies)) + " }"


async def test_graphiql_introspection_passes_for_anonymous_and_admin(http, token) -> None:
    admin = bearer(token("edge-admin", *ALL, "orders:admin"))
    for headers in ({}, admin):
        response = await graphql(http, FULL_INTROSPECTION, headers)
        assert response.status_code == 200, response.text[:500]
        assert "errors" not in response.json() and response.json()["data"]["__schema"]["types"]


@pytest.mark.parametrize("copies", [100, 200])
async def test_aliased_introspection_is_refused(http, copies: int) -> None:
    response = await graphql(http, aliased_schemas(copies))
    assert response.status_code == 400, response.text[:300]
    assert error_code(response) == "VALIDATION_ERROR"
    assert "maximum cost" in response.json()["errors"][0]["message"]
    assert len(response.content) < 10_000


async def test_introspection_fan_out_is_refused(http) -> None:
    fan_out = (
        '{ __type(name: "Query") { fields { type { fields { type { fields { name } } } } } } }'
    )
    response = await graphql(http, fan_out)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"


async def test_a_huge_document_is_refused_before_validation(http) -> None:
    aliases = "{ " + "".join(f"a{i}: __typename " for i in range(20_000)) + "}"
    started = time.perf_counter()
    response = await graphql(http, aliases)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert "tokens" in response.json()["errors"][0]["message"]
    assert time.perf_counter() - started < 1.0


async def test_a_query_over_the_limits_is_refused_before_the_standard_rules(
    http, monkeypatch
) -> None:
    """The standard rules take several times as long as the limits on a large document."""
    validated: list[list[str]] = []

    def recording(schema, document, rules=None, **options):
        validated.append([rule.__name__ for rule in rules or specified_rules])
        return validate(schema, document, rules, **options)

    monkeypatch.setattr(limits, "validate", recording)
    response = await graphql(http, aliased_schemas(100))
    assert response.status_code == 400 and "maximum cost" in response.text
    assert validated == [["QueryLimits"]]
    response = await graphql(http, FULL_INTROSPECTION)
    assert response.status_code == 200
    assert validated[1:] == [["QueryLimits"], [rule.__name__ for rule in specified_rules]]


async def test_introspection_attack_leaves_other_clients_fast(http) -> None:
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as other:
        attack = [asyncio.create_task(graphql(http, aliased_schemas(200))) for _ in range(4)]
        await asyncio.sleep(0.05)  # the attacks are on the wire
        started = time.perf_counter()
        health = await other.get("/health")
        waited = time.perf_counter() - started
        answers = await asyncio.gather(*attack)
    assert health.status_code == 200
    assert waited < 1.0, f"/health waited {waited:.2f}s behind the introspection attack"
    assert all(a.status_code == 400 for a in answers)


async def test_an_answer_over_the_size_cap_is_a_clear_error(http, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_RESPONSE_BYTES", 2_000)
    response = await graphql(http, FULL_INTROSPECTION)
    assert error_code(response) == "RESPONSE_TOO_LARGE", response.text[:300]
    assert len(response.content) < 2_000 and "data" not in response.json()


# --- rate limits on every /graphql request -----------------------------------------------------


async def test_every_graphql_request_is_rate_limited(settings, orders, sample_service, token):
    prefix = f"{settings.cache_prefix}-{uuid.uuid4().hex}"  # 127.0.0.1's own window
    app, server, client = await serve(
        settings, rate_limit_anonymous=2, rate_limit_per_user=3, cache_prefix=prefix
    )
    try:
        anonymous = [await graphql(client, "{ __typename }") for _ in range(2)]
        assert [r.status_code for r in anonymous] == [200, 200]
        over = await client.get("/graphql", params={"query": "{ __typename }"})
        assert over.status_code == 429 and error_code(over) == "RATE_LIMIT_EXCEEDED"
        assert int(over.headers["Retry-After"]) >= 1
        assert over.json()["errors"][0]["extensions"]["correlationId"]
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200  # GraphiQL itself is not a request
        user = bearer(token(f"edge-{uuid.uuid4().hex}", *ALL))
        statuses = [(await graphql(client, "{ __typename }", user)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
    finally:
        await close(app, server, client)


async def test_every_graphql_operation_over_a_websocket_is_rate_limited(settings, orders):
    prefix = f"{settings.cache_prefix}-{uuid.uuid4().hex}"
    app, server, client = await serve(settings, rate_limit_anonymous=2, cache_prefix=prefix)
    try:
        async with await transport_ws(str(client.base_url.netloc.decode())) as socket:
            ws = TransportWS(socket)
            assert (await ws.init(None))["type"] == "connection_ack"
            for operation in ("a", "b", "c"):
                await ws.subscribe(operation, "{ __typename }")
            ended: dict[str, dict[str, Any]] = {}
            while len(ended) < 3:
                if (message := await ws.receive())["type"] in ("complete", "error"):
                    ended[message["id"]] = message
        assert {k: m["type"] for k, m in ended.items()} == {
            "a": "complete",
            "b": "complete",
            "c": "error",
        }
        code = ended["c"]["payload"][0]["extensions"]["code"]
        assert code == "RATE_LIMIT_EXCEEDED"
    finally:
        await close(app, server, client)


# --- bodies: counted as they arrive, nesting bounded, JSON only ---------------------------------


async def raw_chunked_post(http: httpx.AsyncClient, path: str, chunks: int) -> bytes:
    """POST `chunks` chunks of 64 KiB without ever ending the body; the gateway's answer."""
    url = http.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"[" * (64 * 1024)
        for _ in range(chunks):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/graphql", 413, b"PAYLOAD_TOO_LARGE"),
        (PLACE, 413, b"PAYLOAD_TOO_LARGE"),
        ("/api/nowhere/x", 404, b"NOT_FOUND"),  # answered without reading the body at all
    ],
)
async def test_a_chunked_body_over_the_limit_is_refused_unread(
    http, path: str, status: int, code: bytes
) -> None:
    answer = await raw_chunked_post(http, path, chunks=20)  # 1.25 MiB, over the 1 MiB limit
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status), answer[:300]
    assert code in body


async def test_a_large_chunked_graphql_body_is_refused(http) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "variables": {"x": "'
        for _ in range(40):
            yield b"x" * MB
        yield b'"}}'

    response = await http.post(
        "/graphql", content=body(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and error_code(response) == "PAYLOAD_TOO_LARGE"


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [10_000, 500])
async def test_deeply_nested_graphql_variables_are_a_validation_error(http, token, depth) -> None:
    place = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }"
    variables = f'{{"input": {{"customerId": "edge", "items": {nested_list(depth)}}}}}'
    body = f'{{"query": {json.dumps(place)}, "variables": {variables}}}'
    headers = {**JSON, **bearer(token("edge", *ALL))}
    response = await http.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"


@pytest.mark.parametrize("depth", [10_000, 500])
async def test_deeply_nested_rest_bodies_are_a_validation_error(http, token, depth: int) -> None:
    body = f'{{"customerId": "edge", "items": {nested_list(depth)}}}'
    headers = {**JSON, **bearer(token("edge", *ALL))}
    response = await http.post("/api/orders/place-order", content=body, headers=headers)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"


async def test_text_that_is_not_unicode_is_refused_at_the_gateway(http, token) -> None:
    """A lone surrogate, spelled as a JSON escape: Python's parser takes it, the services'
    refuses it. The gateway refuses it itself, over REST and GraphQL alike; it used to send it
    over the bus, and the service answered from behind it."""
    headers = {**JSON, **bearer(token("edge", *ALL))}
    body = json.dumps({**ORDER, "customerId": "\ud800"})
    rest = await http.post(PLACE, content=body, headers=headers)
    assert rest.status_code == 400 and error_code(rest) == "VALIDATION_ERROR"
    assert "lone surrogate" in rest.json()["error"]["message"]
    place = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }"
    variables = {"input": {**ORDER, "customerId": "\ud800"}}
    graphql = await http.post(
        "/graphql", content=json.dumps({"query": place, "variables": variables}), headers=headers
    )
    (error,) = graphql.json()["errors"]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert "lone surrogate" in error["message"]


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", None],
)
async def test_rest_posts_that_are_not_json_are_refused(http, token, content_type) -> None:
    headers = bearer(token("edge", *ALL))
    if content_type:
        headers["Content-Type"] = content_type
    response = await http.post(
        "/api/orders/place-order", content=json.dumps(ORDER), headers=headers
    )
    assert response.status_code == 415 and error_code(response) == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.banyan+json"],
)
async def test_rest_posts_of_json_are_accepted(http, token, content_type) -> None:
    headers = {"Content-Type": content_type, **bearer(token("edge", *ALL))}
    response = await http.post(
        "/api/orders/place-order", content=json.dumps(ORDER), headers=headers
    )
    assert response.status_code == 200, response.text


async def test_a_post_without_body_needs_no_content_type(http) -> None:
    response = await http.post("/api/sample/explode", content=b"")
    assert response.status_code != 415


# --- headers -----------------------------------------------------------------------------------

BAD_HEADERS = {
    "position-overflow": {"X-Min-Position": "99999999999999999999999"},
    "position-over-int64": {"X-Min-Position": str(2**63)},
    "position-unicode-digit": {"X-Min-Position": b"\xb2"},  # "²" in latin-1: isdigit() is True
    "position-negative": {"X-Min-Position": "-1"},
    "correlation-too-long": {"X-Correlation-ID": "c" * 300},
    "correlation-not-printable": {"X-Correlation-ID": "c\tid"},
}


@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
async def test_bad_headers_are_refused_at_the_edge(http, token, headers) -> None:
    auth = bearer(token("edge", *ALL))
    rest = await http.get(
        "/api/orders/get-order", params={"orderId": "o-1"}, headers={**auth, **headers}
    )
    assert rest.status_code == 400 and error_code(rest) == "VALIDATION_ERROR", rest.text
    assert rest.headers["X-Correlation-ID"] != headers.get("X-Correlation-ID")
    gql = await graphql(http, "{ __typename }", {**auth, **headers})
    assert gql.status_code == 400 and error_code(gql) == "VALIDATION_ERROR", gql.text


async def test_the_largest_position_is_accepted(http, token) -> None:
    headers = {"X-Min-Position": str(2**63 - 1), **bearer(token("edge", *ALL))}
    response = await http.get("/api/orders/list-orders", headers=headers)
    assert error_code(response) == "VALIDATION_ERROR"  # parsed, then found beyond the log
    assert "beyond the end of the log" in response.json()["error"]["message"]


# --- the breaker counts only the service's own failures ----------------------------------------


async def test_bad_headers_do_not_open_the_breaker(settings, orders, sample_service, token):
    app, server, client = await serve(settings, rate_limit_per_user=1000)
    try:
        auth = bearer(token("edge", *ALL))
        overflow = {"X-Min-Position": "99999999999999999999999", **auth}
        for _ in range(12):
            await client.get("/api/orders/list-orders", headers=overflow)
        response = await client.get("/api/orders/list-orders", headers=auth)
        assert response.status_code == 200, response.text
    finally:
        await close(app, server, client)


async def test_a_request_that_cannot_be_published_does_not_count(edge, token) -> None:
    state = edge[0].state.gateway
    route = state.routes.find("orders", "list-orders")
    call = Call(route, {}, state.auth.identify(httpx.Headers(bearer(token("edge", *ALL)))),
                "c-unpublishable", min_position=10**30)  # fmt: skip
    for _ in range(12):
        with pytest.raises(PlatformError) as raised:
            await invoke(state, call)
        assert "cannot reach RabbitMQ" not in raised.value.message
        assert raised.value.status < 500
    assert state.breakers.get("orders").state == CLOSED


def test_a_trial_that_never_reached_the_service_leaves_the_next_one_to_decide() -> None:
    breaker = Breaker(cooldown=0.0, min_requests=1)
    breaker.record(False)
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one trial at a time
    breaker.release()
    assert breaker.allow()
