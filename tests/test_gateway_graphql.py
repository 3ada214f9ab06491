"""GraphQL and WebSocket on the gateway, over real HTTP, RabbitMQ, PostgreSQL and Redis."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from examples.orders import service as orders_service
from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.graphql.limits import MAX_COMPLEXITY, MAX_DEPTH
from gateway.graphql.typemap import TypeMap
from gateway.registry import from_services
from gateway.subscriptions import CAPACITY, Delivery, EventHub, Subscription
from pipelines import Aggregate, Command, Context, Event, Model, Query, Service, applies
from pipelines.http import HttpServer
from tests.conftest import eventually
from tests.test_gateway import ALL, ITEMS, bearer

WAIT = 10.0  # bound on every wait for a message


# A test-only service: a permissioned event, a free-form field and a recursive result.
class Deposited(Event, service="vault", permissions=["vault:watch"]):
    vault_id: str
    amount: int
    memo: dict[str, Any] = {}


class Deposit(Command):
    vault_id: str
    amount: int
    memo: dict[str, Any] = {}


class Explore(Query):
    depth: int


class Branch(Model):
    label: str
    children: list["Branch"] = []


class Safe(Aggregate):
    total: int = 0

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.total += event.amount


vault = Service("vault")
vault.publishes(Deposited)


@vault.command(Deposit)
async def deposit(command: Deposit, ctx: Context) -> int:
    safe = await ctx.load(Safe, command.vault_id)
    safe.record(Deposited(vault_id=command.vault_id, amount=command.amount, memo=command.memo))
    return safe.total


@vault.query(Explore, result=Branch)
async def explore(query: Explore, ctx: Context) -> Branch:
    branch = Branch(label="leaf")
    for level in range(query.depth):
        branch = Branch(label=f"level-{level}", children=[branch])
    return branch


@pytest.fixture(scope="module")
async def vault_service(settings) -> AsyncIterator[None]:
    instance = vault.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()  # the orders instance's relay publishes every service's events
    yield
    await instance.stop()


async def serve(settings, services):
    app = create_app(
        settings.model_copy(update={"rate_limit_anonymous": 1000}), from_services(services)
    )
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    return app, server


async def stop(app, server) -> None:
    await server.stop()
    await app.state.gateway.stop()


@pytest.fixture(scope="module")
async def served(settings, orders, vault_service) -> AsyncIterator[tuple[FastAPI, HttpServer]]:
    app, server = await serve(settings, [orders_service, vault])
    yield app, server
    await stop(app, server)


@pytest.fixture(scope="module")
def gateway(served) -> str:
    return f"127.0.0.1:{served[1].port}"


@pytest.fixture(scope="module")
def hub(served) -> EventHub:
    listeners = served[0].state.gateway.feed.listeners
    return next(o for f in listeners if isinstance(o := getattr(f, "__self__", None), EventHub))


@pytest.fixture(scope="module")
async def http(gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{gateway}", timeout=30) as client:
        yield client


async def graphql(
    http: httpx.AsyncClient, query: str, token: str | None = None, **extra: Any
) -> httpx.Response:
    headers = {**(bearer(token) if token else {}), **extra.pop("headers", {})}
    return await http.post("/graphql", json={"query": query, **extra}, headers=headers)


PLACE = """mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }"""


async def place_order(http: httpx.AsyncClient, token: str, customer: str) -> tuple[str, int]:
    response = await graphql(
        http, PLACE, token, variables={"input": {"customerId": customer, "items": ITEMS}}
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]["placeOrder"]["orderId"], body["extensions"]["eventPosition"]


async def test_mutation_then_query_reads_its_write(http, token) -> None:
    auth = token("gql-alice", *ALL)
    placed = await graphql(
        http,
        """mutation { placeOrder(input: {customerId: "gql-alice",
             items: [{sku: "lime", quantity: 2, unitPrice: 0.40}]}) { orderId } }""",
        auth,
    )
    body = placed.json()
    order_id, position = body["data"]["placeOrder"]["orderId"], body["extensions"]["eventPosition"]
    assert isinstance(position, int) and position > 0
    got = await graphql(
        http,
        """query Get($id: String!) { getOrder(input: {orderId: $id}) {
             orderId status total items { sku quantity unitPrice } } }""",
        auth,
        variables={"id": order_id},
        headers={"X-Min-Position": str(position)},
    )
    order = got.json()["data"]["getOrder"]
    assert order["status"] == "placed" and order["orderId"] == order_id
    assert order["total"] == "0.80"  # Decimal, exact, as a string
    assert order["items"] == [{"sku": "lime", "quantity": 2, "unitPrice": "0.40"}]
    listed = await graphql(
        http,
        """{ listOrders(input: {customerId: "gql-alice", status: placed, pageSize: 5}) {
             pageSize total items { orderId status } } }""",
        auth,
    )
    page = listed.json()["data"]["listOrders"]
    assert page["pageSize"] == 5 and order_id in [o["orderId"] for o in page["items"]]


async def test_mutations_are_idempotent_with_an_idempotency_key(http, token) -> None:
    auth, key = token("gql-idem", *ALL), uuid.uuid4().hex
    order = {"input": {"customerId": "gql-idem", "items": ITEMS}}

    async def place(query: str, idempotency_key: str) -> dict[str, Any]:
        response = await graphql(
            http, query, auth, variables=order, headers={"Idempotency-Key": idempotency_key}
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return dict(body)

    first, again = await place(PLACE, key), await place(PLACE, key)
    assert again == first  # the same order, and the position of its one event
    other = await place(PLACE, uuid.uuid4().hex)
    assert other["data"] != first["data"]
    both = (
        "mutation Place($input: PlaceOrderInput!) { a: placeOrder(input: $input) { orderId } "
        "b: placeOrder(input: $input) { orderId } }"
    )
    twice = await place(both, key)
    assert twice == await place(both, key)
    placed = {twice["data"]["a"]["orderId"], twice["data"]["b"]["orderId"]}
    assert len(placed | {first["data"]["placeOrder"]["orderId"]}) == 3  # three commands


FIELDS = """{ __schema { queryType { fields { name } } mutationType { fields { name } }
              subscriptionType { fields { name } } } }"""


async def visible_fields(http: httpx.AsyncClient, token: str | None) -> set[str]:
    schema = (await graphql(http, FIELDS, token)).json()["data"]["__schema"]
    roots = [schema[k] for k in ("queryType", "mutationType", "subscriptionType") if schema[k]]
    return {field["name"] for root in roots for field in root["fields"]}


async def test_each_caller_sees_only_what_they_may_call(http, token) -> None:
    everything = await visible_fields(http, token("gql-all", *ALL, "vault:watch"))
    placer = await visible_fields(http, token("gql-placer", "orders:place", "orders:read"))
    anonymous = await visible_fields(http, None)
    assert {"placeOrder", "cancelOrder", "getOrder", "listOrders", "deposited"} <= everything
    assert {"placeOrder", "getOrder"} <= placer and "cancelOrder" not in placer
    assert "deposited" not in placer
    assert {"deposit", "explore", "_schemaVersion"} <= anonymous
    hidden = {"placeOrder", "cancelOrder", "getOrder", "listOrders", "deposited", "orderPlaced"}
    assert not hidden & anonymous
    refused = await graphql(
        http, '{ __type(name: "Mutation") { fields { name } } }', token("gql-placer")
    )
    assert "cancelOrder" not in json.dumps(refused.json())
    unseen = await graphql(
        http, 'mutation { cancelOrder(input: {orderId: "x"}) { status } }', token("gql-placer")
    )
    assert unseen.status_code == 400
    assert unseen.json()["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"


async def test_errors_carry_platform_codes(http, token) -> None:
    owner = token("gql-owner", *ALL)
    order_id, _ = await place_order(http, owner, "gql-owner")
    cancel = "mutation C($id: String!) { cancelOrder(input: {orderId: $id}) { status } }"
    mine = {"id": order_id}
    cases = [
        (await graphql(http, cancel, token("gql-other", *ALL), variables=mine),
         "POLICY_VIOLATION"),
        (await graphql(http, cancel, owner, variables=mine), None),
        (await graphql(http, cancel, owner, variables=mine), "CONFLICT"),
        (await graphql(http, PLACE, owner, variables={"input": {"customerId": "c", "items": []}}),
         "VALIDATION_ERROR"),
        (await graphql(http, '{ getOrder(input: {orderId: "nope"}) { status } }', owner),
         "NOT_FOUND"),
        (await graphql(http, "{ getOrder { status } }", owner), "VALIDATION_ERROR"),
        (await graphql(http, "{ nothingHere }", owner), "VALIDATION_ERROR"),
        (await graphql(http, "{ oops", owner), "VALIDATION_ERROR"),
    ]  # fmt: skip
    for response, code in cases:
        body = response.json()
        if code is None:
            assert "errors" not in body, body
            continue
        error = body["errors"][0]
        assert error["extensions"]["code"] == code, body
        assert error["extensions"]["correlationId"] == response.headers["X-Correlation-ID"]
        assert "Traceback" not in response.text
    expired = await graphql(http, FIELDS, token("u", ttl=-10))
    assert expired.status_code == 401
    assert expired.json()["errors"][0]["extensions"]["code"] == "TOKEN_EXPIRED"
    malformed = await http.post(
        "/graphql", content=b"{oops", headers={"Content-Type": "text/plain"}
    )
    error = malformed.json()["errors"][0]
    assert malformed.status_code == 400 and error["extensions"]["code"] == "VALIDATION_ERROR"
    invalid = await graphql(http, FIELDS, "not-a-token", headers={"X-Correlation-ID": "c-77"})
    error = invalid.json()["errors"][0]
    assert invalid.status_code == 401 and error["extensions"]["code"] == "INVALID_TOKEN"
    assert error["extensions"]["correlationId"] == "c-77"


def nested(depth: int) -> str:
    """`explore` with its result `depth` fields deep."""
    selection = "label"
    for _ in range(depth - 1):
        selection = f"label children {{ {selection} }}"
    return f"{{ explore(input: {{depth: {depth}}}) {{ {selection} }} }}"


async def test_depth_and_complexity_limits(http) -> None:
    deep_enough = await graphql(http, nested(MAX_DEPTH - 1))
    assert deep_enough.status_code == 200 and "errors" not in deep_enough.json()
    assert deep_enough.json()["data"]["explore"]["children"][0]["label"] == f"level-{MAX_DEPTH - 3}"
    too_deep = await graphql(http, nested(MAX_DEPTH))
    error = too_deep.json()["errors"][0]
    assert too_deep.status_code == 400 and error["extensions"]["code"] == "VALIDATION_ERROR"
    assert error["extensions"]["details"] == {"depth": MAX_DEPTH + 1, "maximumDepth": MAX_DEPTH}
    fields = lambda n: "{ " + " ".join(f"f{i}: _schemaVersion" for i in range(n)) + " }"  # noqa: E731
    assert (await graphql(http, fields(MAX_COMPLEXITY))).status_code == 200
    complex_ = await graphql(http, fields(MAX_COMPLEXITY + 1))
    assert complex_.status_code == 400
    assert complex_.json()["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert "maximum cost" in complex_.json()["errors"][0]["message"]
    deep_types = "{ name type { ofType { ofType { ofType { ofType { ofType { name } } } } } } }"
    introspection = await graphql(http, FIELDS.replace("{ name }", deep_types))
    assert introspection.status_code == 200  # introspection fields count for no depth


async def test_graphiql_is_served_on_get(http) -> None:
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


class TransportWS:
    """A graphql-transport-ws client."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), WAIT))
        return message

    async def init(self, token: str | None) -> dict[str, Any]:
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(
        self, operation_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        payload = {"query": query, "variables": variables or {}}
        await self.send({"type": "subscribe", "id": operation_id, "payload": payload})

    async def settled(self) -> list[dict[str, Any]]:
        """What the server sent before answering a ping: it handles messages in order, and a
        subscription is bound on the bus before the server reads the next message."""
        await self.send({"type": "ping"})
        received = []
        while (message := await self.receive())["type"] != "pong":
            received.append(message)
        return received


async def transport_ws(gateway: str) -> ClientConnection:
    return await connect(
        f"ws://{gateway}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
    )


async def test_subscription_receives_events_it_may_see(gateway, http, token) -> None:
    customer = f"gql-sub-{uuid.uuid4().hex}"
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        assert (await client.init(token(customer, *ALL)))["type"] == "connection_ack"
        await client.subscribe(
            "orders",
            "subscription S($customer: String) { orderPlaced(filter: {customerId: $customer}) "
            "{ eventType position data { orderId customerId total } } }",
            {"customer": customer},
        )
        await client.subscribe("deposits", "subscription { deposited { data { vaultId } } }")
        refused = await client.settled()
        assert [(m["type"], m["id"]) for m in refused] == [("error", "deposits")]
        assert refused[0]["payload"][0]["extensions"]["code"] == "VALIDATION_ERROR"
        await place_order(http, token("gql-someone-else", *ALL), "gql-someone-else")
        order_id, position = await place_order(http, token(customer, *ALL), customer)
        message = await client.receive()
        assert (message["type"], message["id"]) == ("next", "orders")
        event = message["payload"]["data"]["orderPlaced"]
        assert event["eventType"] == "OrderPlaced" and event["position"] == position
        assert event["data"] == {"orderId": order_id, "customerId": customer, "total": "0.80"}
        await client.send({"type": "complete", "id": "orders"})
        assert await client.settled() == []


async def test_permissioned_event_reaches_only_permitted_subscribers(gateway, http, token) -> None:
    vault_id = f"vault-{uuid.uuid4().hex}"
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        await client.init(token("gql-watcher", "vault:watch"))
        await client.subscribe(
            "d",
            "subscription D($v: String) { deposited(filter: {vaultId: $v}) "
            "{ data { amount memo } } }",
            {"v": vault_id},
        )
        assert await client.settled() == []
        deposited = await graphql(
            http,
            "mutation D($v: String!) "
            '{ deposit(input: {vaultId: $v, amount: 5, memo: {note: "hi", n: [1]}}) }',
            variables={"v": vault_id},
        )
        assert deposited.json()["data"]["deposit"] == 5
        event = (await client.receive())["payload"]["data"]["deposited"]
        assert event["data"] == {"amount": 5, "memo": {"note": "hi", "n": [1]}}


async def test_sockets_close_when_their_token_expires(gateway, token) -> None:
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        assert (await client.init(token("gql-brief", *ALL, ttl=2)))["type"] == "connection_ack"
        await client.subscribe("1", "subscription { orderPlaced { position } }")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert closed.value.rcvd.reason.startswith("TOKEN_EXPIRED")
    async with connect(f"ws://{gateway}/ws?token={token('ws-brief', *ALL, ttl=2)}") as socket:
        plain = PlainWS(socket)
        assert (await plain.ask({"type": "subscribe", "eventType": "OrderPlaced"}))["type"] == (
            "subscribed"
        )
        assert (await plain.receive())["error"]["code"] == "TOKEN_EXPIRED"
        with pytest.raises(ConnectionClosed) as closed:
            await plain.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    async with connect(f"ws://{gateway}/ws?token={token('ws-renewed', ttl=2)}") as socket:
        plain = PlainWS(socket)
        renewed = await plain.ask({"type": "auth", "token": token("ws-renewed", ttl=60)})
        assert renewed == {"type": "authenticated", "userId": "ws-renewed"}
        await asyncio.sleep(2.5)  # past the first token's expiry
        assert await plain.ask({"type": "ping"}) == {"type": "pong"}


async def test_subscription_refusals(gateway, token) -> None:
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        await client.send({"type": "connection_init", "payload": {"Authorization": "Bearer x"}})
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        await client.init(token("gql-greedy", *ALL))
        for n in range(101):
            await client.subscribe(str(n), "subscription { orderCancelled { position } }")
        refused = await client.settled()
        assert [(m["type"], m["id"]) for m in refused] == [("error", "100")]
        assert refused[0]["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


class PlainWS:
    """A client of `/ws`."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    async def ask(self, message: dict[str, Any] | str) -> dict[str, Any]:
        await self.socket.send(message if isinstance(message, str) else json.dumps(message))
        return await self.receive()

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), WAIT))
        return message


async def test_plain_websocket_delivers_matching_events(gateway, http, token) -> None:
    wanted, other = f"ws-{uuid.uuid4().hex}", f"ws-{uuid.uuid4().hex}"
    async with connect(f"ws://{gateway}/ws?token={token(wanted, *ALL)}") as socket:
        client = PlainWS(socket)
        subscribed = await client.ask(
            {"type": "subscribe", "id": "mine", "eventType": "OrderPlaced",
             "filters": {"customerId": wanted}}
        )  # fmt: skip
        assert subscribed == {
            "type": "subscribed",
            "id": "mine",
            "eventType": "OrderPlaced",
            "filters": {"customerId": wanted},
        }
        await place_order(http, token(other, *ALL), other)  # filtered out: it would come first
        order_id, position = await place_order(http, token(wanted, *ALL), wanted)
        event = await client.receive()
        assert (event["type"], event["id"], event["eventType"]) == ("event", "mine", "OrderPlaced")
        assert event["data"]["orderId"] == order_id and event["data"]["customerId"] == wanted
        assert event["position"] == position and event["eventId"]
        assert await client.ask({"type": "unsubscribe", "id": "mine"}) == {
            "type": "unsubscribed",
            "id": "mine",
        }
        assert await client.ask({"type": "ping"}) == {"type": "pong"}


async def test_plain_websocket_errors_and_permissions(gateway, token) -> None:
    async with connect(f"ws://{gateway}/ws") as socket:
        client = PlainWS(socket)

        async def code(message: dict[str, Any] | str) -> str:
            answer = await client.ask(message)
            assert answer["type"] == "error", answer
            return str(answer["error"]["code"])

        deposits = {"type": "subscribe", "eventType": "Deposited"}
        assert await code(deposits) == "NO_AUTH_HEADER"
        assert await code("{nope") == "VALIDATION_ERROR"
        assert await code({"type": "dance"}) == "VALIDATION_ERROR"
        assert await code({"type": "subscribe", "eventType": "Nothing"}) == "NOT_FOUND"
        assert await code({"type": "unsubscribe", "id": "none"}) == "NOT_FOUND"
        authenticated = await client.ask({"type": "auth", "token": token("ws-u", *ALL)})
        assert authenticated == {"type": "authenticated", "userId": "ws-u"}
        assert (
            await code({"type": "subscribe", "eventType": "OrderPlaced", "filters": {"x": 1}})
            == "VALIDATION_ERROR"
        )
        assert await code(deposits) == "INSUFFICIENT_PERMISSIONS"
        await client.ask({"type": "auth", "token": token("ws-u", "vault:watch")})
        assert (await client.ask({**deposits, "id": "d"}))["type"] == "subscribed"
        assert await code({**deposits, "id": "d"}) == "CONFLICT"
    async with connect(f"ws://{gateway}/ws?token=bad") as socket:
        client = PlainWS(socket)
        assert (await client.receive())["error"]["code"] == "INVALID_TOKEN"
        with pytest.raises(ConnectionClosed):
            await client.receive()


async def test_schema_follows_the_registry(settings, orders, vault_service, token) -> None:
    app, server = await serve(settings, [orders_service, vault])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert "deposit" in await visible_fields(http, None)
            state = app.state.gateway
            state.source = from_services([orders_service])
            await state.reload()
            fields = await visible_fields(http, token("gql-all", *ALL))
            assert "deposit" not in fields and "placeOrder" in fields
    finally:
        await stop(app, server)


def test_json_schema_types() -> None:
    schema = {
        "$defs": {
            "Node": {
                "title": "Node",
                "type": "object",
                "properties": {
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "tag": {"enum": ["a-b", "c"], "type": "string"},
                    "bad-name": {"type": "string"},
                },
                "required": ["kids"],
            }
        },
        "title": "Thing",
        "type": "object",
        "properties": {
            "root": {"$ref": "#/$defs/Node"},
            "extra": {"type": "object", "additionalProperties": True},
            "maybe": {"type": ["integer", "null"]},
            "kind": {"enum": ["one", "two"], "type": "string"},
            "mixed": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
        },
        "required": ["root", "maybe", "kind"],
    }
    types = TypeMap()
    assert types.ref(schema, schema, "Thing", "output").type == "Thing"
    assert types.definitions["Thing"] == (
        "type Thing {\n  root: Node!\n  extra: JSON\n  maybe: Int\n  kind: ThingKind!\n"
        "  mixed: JSON\n}"
    )
    assert types.definitions["Node"] == "type Node {\n  kids: [Node!]!\n  tag: String\n}"
    assert types.definitions["ThingKind"] == "enum ThingKind {\n  one\n  two\n}"
    assert types.ref(schema, schema, "Thing", "input").type == "ThingInput"
    assert "root: NodeInput!" in types.definitions["ThingInput"]


async def test_closed_connections_leave_no_subscription(gateway, hub, token) -> None:
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        await client.init(token("gql-leaver", "orders:read"))
        await client.subscribe("1", "subscription { orderPlaced { position } }")
        assert await client.settled() == []
        async with connect(f"ws://{gateway}/ws?token={token('ws-leaver', 'orders:read')}") as plain:
            subscribed = await PlainWS(plain).ask({"type": "subscribe", "eventType": "OrderPlaced"})
            assert subscribed["type"] == "subscribed", subscribed
            assert hub.count() >= 2
    await eventually(lambda: hub.count() == 0, what="subscriptions dropped on close")


async def test_a_subscriber_that_falls_behind_is_dropped() -> None:
    class Hub:
        removed: list[Subscription] = []

        def remove(self, subscription: Subscription) -> None:
            self.removed.append(subscription)

    hub = Hub()
    subscription = Subscription(hub, "E", None, {})  # type: ignore[arg-type]
    for n in range(CAPACITY + 1):
        subscription.offer(Delivery("E", {"n": n}, n, None, None, None))
    assert hub.removed == [subscription]
    received = []
    with pytest.raises(GatewayError) as overflow:
        async for delivery in subscription:
            received.append(delivery.data["n"])
    assert received == list(range(CAPACITY))  # what it had, then the error
    assert overflow.value.code == "SUBSCRIPTION_OVERFLOW"
