"""Events reach only those their contract allows: over `/ws`, graphql-transport-ws and the
per-caller GraphQL schema, on a gateway over real HTTP, RabbitMQ, PostgreSQL and Redis."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from auth import service as auth_service
from discovery import service as discovery_service
from discovery.validation import check_registration
from examples.orders import service as orders_service
from gateway.registry import from_services
from pipelines import Aggregate, Command, Context, Event, Service, applies
from pipelines.contracts import InvalidContract
from pipelines.errors import ValidationError
from pipelines.http import HttpServer
from pipelines.registry import Audience
from tests.test_gateway import ALL
from tests.test_gateway_graphql import (
    PlainWS,
    TransportWS,
    graphql,
    place_order,
    serve,
    stop,
    transport_ws,
)

READER = ("orders:place", "orders:read")
ADMIN = (*ALL, "orders:admin")
PLATFORM_EVENTS = ["SessionStarted", "UserCreated", "ContractsChanged"]


# A test-only service: one event for everyone, one that declares no audience.
class Pinged(Event, service="beacon", public=True):
    beacon_id: str


class Hushed(Event, service="beacon"):
    beacon_id: str


class Ping(Command):
    beacon_id: str


class Beacon(Aggregate):
    pings: int = 0

    @applies(Pinged)
    def _pinged(self, event: Pinged) -> None:
        self.pings += 1

    @applies(Hushed)
    def _hushed(self, event: Hushed) -> None:
        pass


beacon = Service("beacon")
beacon.publishes(Pinged, Hushed)


@beacon.command(Ping)
async def ping(command: Ping, ctx: Context) -> int:
    light = await ctx.load(Beacon, command.beacon_id)
    light.record(Hushed(beacon_id=command.beacon_id))
    light.record(Pinged(beacon_id=command.beacon_id))
    return light.pings


@pytest.fixture(scope="module")
async def served(settings, orders) -> AsyncIterator[tuple[FastAPI, HttpServer]]:
    instance = beacon.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()  # the orders instance's relay publishes every service's events
    services = [orders_service, beacon, auth_service, discovery_service]
    app, server = await serve(settings, services)
    yield app, server
    await stop(app, server)
    await instance.stop()


@pytest.fixture(scope="module")
def gateway(served) -> str:
    return f"127.0.0.1:{served[1].port}"


@pytest.fixture(scope="module")
async def http(gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{gateway}", timeout=30) as client:
        yield client


def plain(gateway: str, token: str | None = None) -> Any:
    return connect(f"ws://{gateway}/ws" + (f"?token={token}" if token else ""))


async def refusal(client: PlainWS, event_type: str, **filters: Any) -> dict[str, Any]:
    answer = await client.ask({"type": "subscribe", "eventType": event_type, "filters": filters})
    assert answer["type"] == "error", answer
    return dict(answer["error"])


async def test_anonymous_callers_are_refused_with_a_clear_error(gateway) -> None:
    async with plain(gateway) as socket:
        error = await refusal(PlainWS(socket), "OrderPlaced")
        assert error["code"] == "NO_AUTH_HEADER" and "OrderPlaced" in error["message"]
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        assert (await client.init(None))["type"] == "connection_ack"
        await client.subscribe("o", "subscription { orderPlaced { position } }")
        refused = await client.settled()
        assert [(m["type"], m["id"]) for m in refused] == [("error", "o")]


async def test_customers_receive_only_their_own_orders(gateway, http, token) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    async with (
        plain(gateway, token(bob, *READER)) as bob_socket,
        plain(gateway, token("orders-admin", *ADMIN)) as admin_socket,
        await transport_ws(gateway) as bob_graphql,
    ):
        bob_ws, admin_ws, bob_gql = (
            PlainWS(bob_socket),
            PlainWS(admin_socket),
            TransportWS(bob_graphql),
        )
        error = await refusal(bob_ws, "OrderPlaced", customerId=alice)
        assert (error["code"], error["details"]) == (
            "INSUFFICIENT_PERMISSIONS",
            {"field": "customerId", "allowed": bob},
        )
        subscribed = await bob_ws.ask({"type": "subscribe", "id": "b", "eventType": "OrderPlaced"})
        assert subscribed["filters"] == {"customerId": bob}
        admin = await admin_ws.ask({"type": "subscribe", "id": "a", "eventType": "OrderPlaced"})
        assert admin["type"] == "subscribed" and admin["filters"] == {}
        assert (await bob_gql.init(token(bob, *READER)))["type"] == "connection_ack"
        await bob_gql.subscribe("g", "subscription { orderPlaced { data { orderId customerId } } }")
        await bob_gql.subscribe(
            "alices",
            "subscription A($c: String) { orderPlaced(filter: {customerId: $c}) { position } }",
            {"c": alice},
        )
        refused = await bob_gql.settled()
        assert [(m["type"], m["id"]) for m in refused] == [("error", "alices")]
        assert refused[0]["payload"][0]["extensions"]["code"] == "INSUFFICIENT_PERMISSIONS"
        alices, _ = await place_order(http, token(alice, *READER), alice)
        bobs, _ = await place_order(http, token(bob, *READER), bob)
        mine = await bob_ws.receive()
        assert (mine["id"], mine["data"]["orderId"]) == ("b", bobs), "alice's came first"
        graphql_mine = (await bob_gql.receive())["payload"]["data"]["orderPlaced"]["data"]
        assert graphql_mine == {"orderId": bobs, "customerId": bob}
        seen = [(await admin_ws.receive())["data"]["orderId"] for _ in range(2)]
        assert seen == [alices, bobs]


async def test_platform_events_are_never_delivered(gateway, http, token) -> None:
    everything = token("root", *ADMIN, "users:manage", "roles:manage")
    async with plain(gateway, everything) as socket:
        client = PlainWS(socket)
        for event_type in PLATFORM_EVENTS:
            error = await refusal(client, event_type)
            assert error["code"] == "INSUFFICIENT_PERMISSIONS", error
            assert error["message"] == f"{event_type} is not delivered to clients"
    fields = await subscription_fields(http, everything)
    assert not {"sessionStarted", "userCreated", "contractsChanged"} & fields


async def test_only_declared_audiences_receive_events(gateway, http, token) -> None:
    beacon_id = f"beacon-{uuid.uuid4().hex}"
    async with plain(gateway) as socket, await transport_ws(gateway) as graphql_socket:
        client, gql = PlainWS(socket), TransportWS(graphql_socket)
        for caller in (None, token("ws-admin", *ADMIN)):
            if caller:
                await client.ask({"type": "auth", "token": caller})
            error = await refusal(client, "Hushed")
            assert (error["code"], error["message"]) == (
                "INSUFFICIENT_PERMISSIONS",
                "Hushed is not delivered to clients",
            )
        await client.ask({"type": "auth", "token": token("ws-anyone")})
        subscribed = await client.ask(
            {"type": "subscribe", "eventType": "Pinged", "filters": {"beaconId": beacon_id}}
        )
        assert subscribed["type"] == "subscribed", subscribed
        assert (await gql.init(None))["type"] == "connection_ack"
        await gql.subscribe(
            "p",
            "subscription P($b: String) { pinged(filter: {beaconId: $b}) { data { beaconId } } }",
            {"b": beacon_id},
        )
        assert await gql.settled() == []
        pinged = await graphql(
            http,
            "mutation P($b: String!) { ping(input: {beaconId: $b}) }",
            variables={"b": beacon_id},
        )
        assert pinged.json()["data"]["ping"] == 1, pinged.text
        event = await client.receive()
        assert (event["eventType"], event["data"]) == ("Pinged", {"beaconId": beacon_id})
        assert event["schemaVersion"] == 1  # the version `data` was written in
        delivered = (await gql.receive())["payload"]["data"]["pinged"]["data"]
        assert delivered == {"beaconId": beacon_id}


async def test_a_socket_that_changes_its_caller_keeps_only_what_they_may_have(
    gateway, http, token
) -> None:
    bob, beacon_id = f"bob-{uuid.uuid4().hex}", f"beacon-{uuid.uuid4().hex}"
    async with plain(gateway, token(bob, *READER)) as socket:
        client = PlainWS(socket)
        await client.ask({"type": "subscribe", "id": "orders", "eventType": "OrderPlaced"})
        pings = {"type": "subscribe", "id": "pings", "eventType": "Pinged"}
        await client.ask({**pings, "filters": {"beaconId": beacon_id}})
        await client.socket.send(json.dumps({"type": "auth", "token": token(bob, "orders:place")}))
        answers = [await client.receive() for _ in range(2)]
        ended = next(a for a in answers if a["type"] == "error")
        assert (ended["id"], ended["error"]["code"]) == ("orders", "INSUFFICIENT_PERMISSIONS")
        assert {"type": "authenticated", "userId": bob} in answers
        await place_order(http, token(bob, *READER), bob)
        ping = "mutation P($b: String!) { ping(input: {beaconId: $b}) }"
        await graphql(http, ping, variables={"b": beacon_id})
        after = await client.receive()
        assert (after["id"], after["eventType"]) == ("pings", "Pinged"), "OrderPlaced came first"


@pytest.mark.parametrize(
    "payload",
    [{"token": "t"}, {"authToken": "t"}, {"headers": {"Authorization": "Bearer t"}}],
)
async def test_a_token_passed_the_wrong_way_is_refused(gateway, token, payload) -> None:
    if "headers" in payload:
        payload = {"headers": {"Authorization": f"Bearer {token('u', *READER)}"}}
    else:
        payload = dict.fromkeys(payload, token("u", *READER))
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        await client.send({"type": "connection_init", "payload": payload})
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        assert "Authorization" in closed.value.rcvd.reason


async def test_authorization_must_be_a_bearer_token(gateway, token) -> None:
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        bare = {"Authorization": token("u", *READER)}
        await client.send({"type": "connection_init", "payload": bare})
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    async with await transport_ws(gateway) as socket:
        client = TransportWS(socket)
        lower = {"authorization": f"Bearer {token('u', *READER)}"}
        await client.send({"type": "connection_init", "payload": lower})
        assert (await client.receive())["type"] == "connection_ack"


async def test_a_subscription_ends_when_its_event_stops_being_delivered(
    settings, served, rpc
) -> None:
    class Pinged(Event, service="beacon"):  # the next version: no audience any more
        beacon_id: str

    hushed = Service("beacon")
    hushed.publishes(Pinged)
    beacon_id = f"beacon-{uuid.uuid4().hex}"
    app, server = await serve(settings, [beacon])
    try:
        async with plain(f"127.0.0.1:{server.port}") as socket:
            client = PlainWS(socket)
            subscribed = await client.ask(
                {"type": "subscribe", "id": "p", "eventType": "Pinged",
                 "filters": {"beaconId": beacon_id}}
            )  # fmt: skip
            assert subscribed["type"] == "subscribed", subscribed
            app.state.gateway.source = from_services([hushed])
            await app.state.gateway.reload()
            await rpc.send("beacon", Ping(beacon_id=beacon_id))
            ended = await client.receive()
            assert (ended["type"], ended["id"]) == ("error", "p")
            assert ended["error"]["message"] == "Pinged is not delivered to clients"
    finally:
        await stop(app, server)


SUBSCRIPTIONS = "{ __schema { subscriptionType { fields { name } } } }"


async def subscription_fields(http: httpx.AsyncClient, token: str | None) -> set[str]:
    body = (await graphql(http, SUBSCRIPTIONS, token)).json()
    root = body["data"]["__schema"]["subscriptionType"]
    return {field["name"] for field in root["fields"]} if root else set()


async def test_each_caller_sees_only_the_subscriptions_they_may_use(http, token) -> None:
    orders_events = {"orderPlaced", "orderCancelled", "orderConfirmed", "orderRejected"}
    assert await subscription_fields(http, None) == {"pinged"}
    assert await subscription_fields(http, token("placer", "orders:place")) == {"pinged"}
    assert await subscription_fields(http, token("reader", *READER)) == orders_events | {"pinged"}
    assert await subscription_fields(http, token("root", "*")) == {"pinged"}  # no wildcard


def test_contracts_declare_a_consistent_audience() -> None:
    with pytest.raises(InvalidContract, match="owner"):

        class NoSuchOwner(Event, service="x", permissions=["x:read"], owner="nobody"):
            who: str

    with pytest.raises(InvalidContract, match="text field"):

        class NumberOwner(Event, service="x", permissions=["x:read"], owner="who"):
            who: int

    with pytest.raises(InvalidContract, match="public"):

        class Contradiction(Event, service="x", public=True, permissions=["x:read"]):
            who: str

    with pytest.raises(InvalidContract, match="admin"):

        class AdminOfNothing(Event, service="x", permissions=["x:read"], admin="x:admin"):
            who: str

    with pytest.raises(InvalidContract, match="events"):

        class PublicCommand(Command, public=True):
            who: str

    class Owned(Event, service="x", permissions=["x:read"], owner="who", admin=["x:admin"]):
        who: str

    assert (Owned.__owner__, Owned.__admin__, Owned.is_public()) == ("who", ("x:admin",), False)
    assert Pinged.is_public() and not Hushed.is_public()


def test_discovery_reads_old_registrations_and_refuses_contradictory_audiences() -> None:
    registration = beacon.registration("static")
    before_audiences = [
        c.model_copy(update={"audience": None, "is_public": True}) for c in registration.contracts
    ]
    check_registration(registration.model_copy(update={"contracts": before_audiences}))
    pinged = next(c for c in registration.contracts if c.message_type == "Pinged")
    contradictions: dict[str, dict[str, Any]] = {  # what the error says: the change
        "a public event takes no permissions": {"required_permissions": ["beacon:read"]},
        "say who receives it": {"audience": Audience(), "is_public": False},
        "is not a field of it": {
            "audience": Audience(owner="nobody"),
            "required_permissions": ["beacon:read"],
            "is_public": False,
        },
    }
    for message, change in contradictions.items():
        wrong = registration.model_copy(update={"contracts": [pinged.model_copy(update=change)]})
        with pytest.raises(ValidationError, match=message):
            check_registration(wrong)
