"""Sessions end when they end: signing out, changing the password, losing access and being
disabled refuse the user's access tokens on the next request, at the gateway, in every
service and on open sockets, while the gateway still makes one Redis round trip per request."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from auth import service as auth_service
from examples.orders import service as orders_service
from examples.orders.contracts import ListOrders
from pipelines import Aggregate, Command, Context, Event, Service, applies
from pipelines.identity import Caller, TokenCodec
from pipelines.instance import ServiceInstance
from pipelines.revocation import Revocation, Revocations, RevocationStore
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from tests.conftest import eventually, started
from tests.gateway_rig import running_gateway
from tests.redis_connections import count_opened
from tests.tcp_proxy import free_port
from tests.test_gateway import bearer
from tests.test_gateway_graphql import TransportWS, transport_ws

ITEMS = [{"sku": "lime", "quantity": 2, "unitPrice": "0.40"}]
ADMIN = ("auth:create-user", "auth:manage-users", "auth:manage-roles")
LIST = "/api/orders/list-orders"
WAIT = 10.0  # seconds a socket may take to be closed


@pytest.fixture(scope="module")
async def auth(settings: Settings) -> AsyncIterator[ServiceInstance]:
    instance = auth_service.instance(settings.model_copy(update={"auth_port": free_port()}))
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture(scope="module")
async def served(
    settings: Settings, auth: ServiceInstance, orders: ServiceInstance
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    roomy = settings.model_copy(update={"rate_limit_anonymous": 10_000})  # many sign-ins
    async with running_gateway(roomy, [auth_service, orders_service]) as served:
        yield served


@pytest.fixture(scope="module")
def http(served: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return served[1]


@pytest.fixture(scope="module")
def admin(token: Any) -> dict[str, str]:
    return bearer(token(f"admin-{uuid.uuid4().hex[:8]}", *ADMIN))


@pytest.fixture(scope="module")
async def shopper(http: httpx.AsyncClient, admin: dict[str, str]) -> str:
    """A role that may place and read orders."""
    name = f"shopper-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "permissions": ["orders:place", "orders:read"]}
    assert (await http.post("/api/auth/create-role", json=body, headers=admin)).status_code == 200
    return name


async def new_user(http: httpx.AsyncClient, admin: dict[str, str], role: str) -> dict[str, Any]:
    """A fresh user with `role`, signed in: {userId, email, password, tokens}."""
    email, password = f"{uuid.uuid4().hex[:12]}@example.com", f"pw-{uuid.uuid4().hex}"
    body = {"email": email, "password": password, "name": "Sam", "roles": [role]}
    created = await http.post("/api/auth/create-user", json=body, headers=admin)
    assert created.status_code == 200, created.text
    user = {"userId": created.json()["userId"], "email": email, "password": password}
    return {**user, "tokens": await sign_in(http, email, password)}


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    answer = await http.post("/api/auth/authenticate", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def status_of(http: httpx.AsyncClient, tokens: dict[str, Any]) -> int:
    return (await http.get(LIST, headers=bearer(tokens["accessToken"]))).status_code


async def refused(http: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    answer = await http.get(LIST, headers=bearer(tokens["accessToken"]))
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "INVALID_TOKEN"
    assert "revoked" in answer.json()["error"]["message"]


async def test_sign_out_refuses_the_access_token_on_the_next_request(http, admin, shopper) -> None:
    user = await new_user(http, admin, shopper)
    other_tab = await sign_in(http, user["email"], user["password"])
    assert await status_of(http, user["tokens"]) == 200
    body = {"refreshToken": user["tokens"]["refreshToken"]}
    signed_out = await http.post("/api/auth/revoke-token", json=body)
    assert signed_out.json() == {"revoked": True}
    await refused(http, user["tokens"])
    assert await status_of(http, other_tab) == 200  # another session of the same user


async def test_password_change_refuses_earlier_access_tokens(http, admin, shopper) -> None:
    user = await new_user(http, admin, shopper)
    change = {"currentPassword": user["password"], "newPassword": f"new-{uuid.uuid4().hex}"}
    headers = bearer(user["tokens"]["accessToken"])
    changed = await http.post("/api/auth/change-password", json=change, headers=headers)
    assert changed.status_code == 200, changed.text
    await refused(http, user["tokens"])
    fresh = await sign_in(http, user["email"], change["newPassword"])
    assert await status_of(http, fresh) == 200


async def test_a_de_roled_user_loses_the_permission_on_the_next_request(
    http, admin, shopper
) -> None:
    user = await new_user(http, admin, shopper)
    headers = bearer(user["tokens"]["accessToken"])
    placed = await http.post("/api/orders/place-order", json={"items": ITEMS}, headers=headers)
    assert placed.status_code == 200, placed.text
    body = {"userId": user["userId"], "role": shopper}
    assert (await http.post("/api/auth/unassign-role", json=body, headers=admin)).is_success

    again = await http.post("/api/orders/place-order", json={"items": ITEMS}, headers=headers)
    assert again.status_code == 401, again.text
    refreshed = await http.post(
        "/api/auth/refresh-token", json={"refreshToken": user["tokens"]["refreshToken"]}
    )
    assert refreshed.status_code == 200, refreshed.text  # the session goes on, smaller
    headers = bearer(refreshed.json()["accessToken"])
    again = await http.post("/api/orders/place-order", json={"items": ITEMS}, headers=headers)
    assert again.status_code == 403, again.text


async def test_disable_user_ends_their_tokens_and_sign_in_but_not_others(
    http, admin, shopper
) -> None:
    user, bystander = await new_user(http, admin, shopper), await new_user(http, admin, shopper)
    target = {"userId": user["userId"]}
    disabled = await http.post("/api/auth/disable-user", json=target, headers=admin)
    assert disabled.json() == {"userId": user["userId"], "disabled": True}

    await refused(http, user["tokens"])
    credentials = {"email": user["email"], "password": user["password"]}
    signing_in = await http.post("/api/auth/authenticate", json=credentials)
    assert signing_in.status_code == 401 and "disabled" in signing_in.json()["error"]["message"]
    body = {"refreshToken": user["tokens"]["refreshToken"]}
    assert (await http.post("/api/auth/refresh-token", json=body)).status_code == 401
    assert await status_of(http, bystander["tokens"]) == 200

    enabled = await http.post("/api/auth/enable-user", json=target, headers=admin)
    assert enabled.json() == {"userId": user["userId"], "disabled": False}
    assert await status_of(http, await sign_in(http, user["email"], user["password"])) == 200
    await refused(http, user["tokens"])  # the tokens disabling ended stay ended


async def test_an_administrator_cannot_disable_themselves(http, token) -> None:
    me = token("self-disabler", "auth:manage-users")
    answer = await http.post("/api/auth/disable-user", json={"userId": "self-disabler"},
                             headers=bearer(me))  # fmt: skip
    assert answer.status_code == 400, answer.text


async def test_services_refuse_a_revoked_token_sent_on_the_bus(
    http, admin, shopper, rpc: RpcClient
) -> None:
    user = await new_user(http, admin, shopper)
    access = user["tokens"]["accessToken"]
    assert (await rpc.send("orders", ListOrders(), token=access)).ok
    body = {"refreshToken": user["tokens"]["refreshToken"]}
    assert (await http.post("/api/auth/revoke-token", json=body)).is_success

    async def orders_refuse() -> bool:
        reply = await rpc.send("orders", ListOrders(), token=access)
        return not reply.ok and reply.json()["error"]["code"] == "INVALID_TOKEN"

    await eventually(orders_refuse, what="orders refusing the revoked token")


async def test_open_sockets_of_a_revoked_token_close_with_4401(
    served, admin, shopper, http
) -> None:
    user = await new_user(http, admin, shopper)
    access = user["tokens"]["accessToken"]
    address = str(http.base_url).removeprefix("http://").rstrip("/")
    async with connect(f"ws://{address}/ws?token={access}") as socket:
        await socket.send(json.dumps({"type": "subscribe", "eventType": "OrderPlaced"}))
        subscribed = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
        assert subscribed["type"] == "subscribed"
        body = {"refreshToken": user["tokens"]["refreshToken"]}
        assert (await http.post("/api/auth/revoke-token", json=body)).is_success
        error = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
        assert error["type"] == "error" and error["error"]["code"] == "INVALID_TOKEN"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), WAIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert closed.value.rcvd.reason.startswith("INVALID_TOKEN")
    with pytest.raises(ConnectionClosed) as reconnecting:  # and it cannot connect again
        async with connect(f"ws://{address}/ws?token={access}") as socket:
            await asyncio.wait_for(socket.recv(), WAIT)
            await asyncio.wait_for(socket.recv(), WAIT)
    assert reconnecting.value.rcvd is not None and reconnecting.value.rcvd.code == 4401


async def test_graphql_subscriptions_of_a_disabled_user_close_with_4401(
    admin, shopper, http
) -> None:
    user = await new_user(http, admin, shopper)
    address = str(http.base_url).removeprefix("http://").rstrip("/")
    async with await transport_ws(address) as socket:
        client = TransportWS(socket)
        assert (await client.init(user["tokens"]["accessToken"]))["type"] == "connection_ack"
        await client.subscribe("1", "subscription { orderPlaced { position } }")
        assert await client.settled() == []
        target = {"userId": user["userId"]}
        assert (await http.post("/api/auth/disable-user", json=target, headers=admin)).is_success
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert closed.value.rcvd.reason.startswith("INVALID_TOKEN")


async def test_the_gateway_makes_one_redis_round_trip_per_request(
    served, admin, shopper, monkeypatch
) -> None:
    """Counted on both of the gateway's ways to Redis: its client and its pipe."""
    app, http = served
    gateway = app.state.gateway
    sent: list[Any] = []
    execute, piped = gateway.redis.execute_command, gateway.limiter.pipe.call

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await execute(*args, **options)

    async def counted_pipe(*args: Any) -> Any:
        sent.append(args[0].decode())
        return await piped(*args)

    monkeypatch.setattr(gateway.redis, "execute_command", counted)
    monkeypatch.setattr(gateway.limiter.pipe, "call", counted_pipe)
    user = await new_user(http, admin, shopper)
    headers = bearer(user["tokens"]["accessToken"])

    sent.clear()
    placed = await http.post("/api/orders/place-order", json={"items": ITEMS}, headers=headers)
    assert placed.status_code == 200 and sent == ["EVALSHA"], sent

    async def answered_from_the_gateway_cache() -> bool:  # once the order's invalidation is in
        sent.clear()
        answer = await http.get(LIST, headers=headers)
        return answer.headers.get("X-Cache") == "hit" and "SET" not in sent

    await eventually(answered_from_the_gateway_cache, what="a cached answer")
    sent.clear()
    cached = await http.get(LIST, headers=headers)
    assert cached.headers.get("X-Cache") == "hit" and sent == ["EVALSHA"], sent


async def test_concurrent_requests_share_one_redis_connection(
    served, admin, shopper, monkeypatch
) -> None:
    """Not one connection per request in flight: opening them under load (each within
    REDIS_TIMEOUT) turned requests away from the cache and the rate limits."""
    app, http = served
    headers = bearer((await new_user(http, admin, shopper))["tokens"]["accessToken"])

    async def cached() -> bool:
        return str((await http.get(LIST, headers=headers)).headers.get("X-Cache")) == "hit"

    await eventually(cached, what="a cached answer")
    opened = count_opened(app.state.gateway.redis, monkeypatch)
    hits = await asyncio.gather(*(cached() for _ in range(64)))
    assert all(hits) and len(opened) <= 1, (hits.count(False), len(opened))


async def test_without_redis_the_gateway_still_refuses_revoked_tokens(
    settings, auth, orders, http, admin, shopper
) -> None:
    user = await new_user(http, admin, shopper)
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with running_gateway(no_redis, [auth_service, orders_service]) as (_, blind):
        assert await status_of(blind, user["tokens"]) == 200  # limits and cache fail open
        body = {"refreshToken": user["tokens"]["refreshToken"]}
        assert (await http.post("/api/auth/revoke-token", json=body)).is_success

        async def refuses() -> bool:
            return await status_of(blind, user["tokens"]) == 401

        await eventually(refuses, what="the gateway without Redis refusing the revoked token")


async def test_the_gateway_refuses_what_redis_holds_before_any_event(
    settings, served, token
) -> None:
    """The entries in Redis alone (no event has reached the gateway) refuse a token: by its
    session, or by a generation above the token's; a token issued after them passes."""
    app, http = served
    codec, store = (
        TokenCodec(settings),
        RevocationStore(app.state.gateway.redis, settings.cache_prefix),
    )
    user_id, until = f"u-{uuid.uuid4().hex[:8]}", time.time() + 60

    def access(session_id: str, generation: int) -> dict[str, str]:
        caller = Caller(user_id, permissions=frozenset({"orders:read"}), session_id=session_id,
                        generation=generation)  # fmt: skip
        return bearer(codec.issue(caller))

    signed_out, live = uuid.uuid4().hex, uuid.uuid4().hex
    await store.remember(Revocation("session", signed_out, user_id, 1, until))
    assert (await http.get(LIST, headers=access(signed_out, 0))).status_code == 401
    assert (await http.get(LIST, headers=access(live, 0))).status_code == 200
    await store.remember(Revocation("user", user_id, user_id, 2, until))
    await store.remember(Revocation("user", user_id, user_id, 1, until))  # late: ignored
    assert (await http.get(LIST, headers=access(live, 1))).status_code == 401
    assert (await http.get(LIST, headers=access(live, 2))).status_code == 200
    graphql = await http.post("/graphql", json={"query": "{ __typename }"},
                              headers=access(live, 1))  # fmt: skip
    assert graphql.json()["errors"][0]["extensions"]["code"] == "INVALID_TOKEN"


async def test_each_process_keeps_revocations_from_the_events() -> None:
    revocations = Revocations(lifetime=60)
    alice = Caller("alice", session_id="s-1", generation=1)
    seen: list[Revocation] = []
    revocations.listeners.append(seen.append)
    await revocations.on_event("UserTokensRevoked", {"userId": "alice", "generation": 2}, {})
    await revocations.on_event("UserTokensRevoked", {"userId": "alice", "generation": 1}, {})
    for malformed in ({"userId": 7, "generation": 9}, {"userId": "alice"}, ["alice"]):
        await revocations.on_event("UserTokensRevoked", malformed, {})
    await revocations.on_event("OrderPlaced", {"userId": "alice", "sessionId": "s-2"}, {})
    assert revocations.refuses(alice)
    assert not revocations.refuses(Caller("alice", session_id="s-2", generation=2))
    assert [r.generation for r in seen] == [2, 1]
    await revocations.on_event("SessionRevoked", {"userId": "bob", "sessionId": "s-3"}, {})
    assert revocations.refuses(Caller("bob", session_id="s-3"))
    assert not revocations.refuses(Caller("bob", session_id="s-4"))
    long_ago = {"userId": "carol", "sessionId": "s-5", "revokedAt": int(time.time()) - 61}
    await revocations.on_event("SessionRevoked", long_ago, {})  # its tokens have expired
    assert not revocations.refuses(Caller("carol", session_id="s-5"))


class Noted(Event, service="noting"):
    note_id: str


class Note(Aggregate):
    @applies(Noted)
    def _noted(self, event: Noted) -> None:
        pass


class TakeNote(Command):
    note_id: str


noting = Service("noting")
noting.publishes(Noted)
followed_up: list[str] = []


@noting.command(TakeNote)
async def take_note(command: TakeNote, ctx: Context) -> str:
    ctx.create(Note, command.note_id).record(Noted(note_id=command.note_id))

    async def follow_up() -> None:
        followed_up.append(command.note_id)

    ctx.after_commit(follow_up)
    return command.note_id


seen_committed: list[str] = []


@noting.on(Noted)
async def see_note(event: Noted, ctx: Context) -> None:
    async def seen() -> None:
        seen_committed.append(event.note_id)

    ctx.after_commit(seen)


async def test_after_commit_effects_run_before_the_reply_and_only_once_committed(
    settings, rpc
) -> None:
    """Why revocations reach Redis only once their events are committed: an entry of a
    command that then failed would refuse the user's next tokens too."""
    instance = await started(noting, settings)
    try:
        note = uuid.uuid4().hex
        assert (await rpc.send("noting", TakeNote(note_id=note))).ok
        assert followed_up == [note]  # already, when the reply came
        taken = await rpc.send("noting", TakeNote(note_id=note))  # its append fails
        assert not taken.ok and followed_up == [note]
    finally:
        await instance.stop()


async def test_after_commit_effects_of_an_event_subscriber_run_once_committed(
    settings, rpc
) -> None:
    instance = await started(noting, settings)
    try:
        note = uuid.uuid4().hex
        assert (await rpc.send("noting", TakeNote(note_id=note))).ok
        await eventually(lambda: note in seen_committed, what="the subscriber's follow-up")
        assert seen_committed.count(note) == 1
    finally:
        await instance.stop()
