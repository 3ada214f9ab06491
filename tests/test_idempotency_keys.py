"""`Idempotency-Key` belongs to one caller and one operation, through the gateway (REST and
GraphQL), over real HTTP, RabbitMQ, PostgreSQL and Redis."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth import service as auth_service
from examples.orders import service as orders_service
from gateway.app import create_app
from gateway.registry import from_services
from pipelines.http import HttpServer
from tests.test_auth import admin, auth, auth_settings, new_user  # noqa: F401 (fixtures)
from tests.test_gateway import ALL, ITEMS, bearer

Served = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture(scope="module")
async def served(settings, orders, auth) -> AsyncIterator[Served]:  # noqa: F811
    app = create_app(
        settings.model_copy(update={"command_timeout": 5.0, "rate_limit_anonymous": 1000}),
        from_services([orders_service, auth_service]),
    )
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    yield app, client
    await client.aclose()
    await server.stop()
    await app.state.gateway.stop()


@pytest.fixture(scope="module")
def http(served: Served) -> httpx.AsyncClient:
    return served[1]


async def place(
    http: httpx.AsyncClient, user: str, token: str, key: str | None, quantity: int = 2
) -> httpx.Response:
    headers = {**bearer(token), **({"Idempotency-Key": key} if key is not None else {})}
    items = [{**ITEMS[0], "quantity": quantity}]
    return await http.post(
        "/api/orders/place-order", json={"customerId": user, "items": items}, headers=headers
    )


async def logged(orders: Any, key: str) -> list[str]:
    """The types of the events the commands sent with `key` appended."""
    rows = await orders.runtime.pool.fetch(
        "SELECT event_type FROM events WHERE causation_id = $1 ORDER BY position", key
    )
    return [r["event_type"] for r in rows]


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- one caller ------------------------------------------------------------------------------


async def test_another_callers_key_places_their_own_order(http, token, orders) -> None:
    key = uuid.uuid4().hex
    alice = await place(http, "idem-alice", token("idem-alice", *ALL), key)
    bob = await place(http, "idem-bob", token("idem-bob", *ALL), key)
    assert alice.status_code == bob.status_code == 200, bob.text
    assert bob.json()["orderId"] != alice.json()["orderId"]
    assert await logged(orders, key) == ["OrderPlaced", "OrderPlaced"]


async def test_same_key_and_body_gets_the_first_answer_once_in_the_log(http, token, orders):
    key, jwt = uuid.uuid4().hex, token("idem-carol", *ALL)
    first = await place(http, "idem-carol", jwt, key)
    again = await place(http, "idem-carol", jwt, key)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["X-Event-Position"] == first.headers["X-Event-Position"]
    assert await logged(orders, key) == ["OrderPlaced"]


async def test_same_key_with_another_body_is_refused(http, token, orders) -> None:
    key, jwt = uuid.uuid4().hex, token("idem-dave", *ALL)
    first = await place(http, "idem-dave", jwt, key, quantity=2)
    other = await place(http, "idem-dave", jwt, key, quantity=3)
    assert first.status_code == 200, first.text
    assert other.status_code == 422, other.text
    assert error_code(other) == "IDEMPOTENCY_KEY_REUSED"
    assert first.json()["orderId"] not in other.text
    assert await logged(orders, key) == ["OrderPlaced"]


# --- one operation ---------------------------------------------------------------------------


async def test_a_place_order_key_on_cancel_order_cancels(http, token, orders) -> None:
    key, jwt = uuid.uuid4().hex, token("idem-erin", *ALL)
    placed = await place(http, "idem-erin", jwt, key)
    other = (await place(http, "idem-erin", jwt, None)).json()["orderId"]
    cancelled = await http.post(
        "/api/orders/cancel-order",
        json={"orderId": other},
        headers={**bearer(jwt), "Idempotency-Key": key},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() != placed.json()
    assert await logged(orders, key) == ["OrderPlaced", "OrderCancelled"]


# --- public operations -----------------------------------------------------------------------


async def authenticate(http: httpx.AsyncClient, email: str, password: str, key: str):
    return await http.post(
        "/api/auth/authenticate",
        json={"email": email, "password": password},
        headers={"Idempotency-Key": key},
    )


async def test_authenticate_never_answers_another_body_from_the_record(
    http,
    rpc,
    admin,  # noqa: F811
) -> None:
    alice_id, alice, alice_password = await new_user(rpc, admin)
    _, bob, bob_password = await new_user(rpc, admin)
    key = uuid.uuid4().hex
    signed_in = await authenticate(http, alice, alice_password, key)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == alice_id
    wrong = await authenticate(http, alice, "not-her-password", key)
    assert wrong.status_code in (401, 422), wrong.text
    assert alice_id not in wrong.text and "accessToken" not in wrong.text
    other = await authenticate(http, bob, bob_password, key)
    assert other.status_code == 422 and error_code(other) == "IDEMPOTENCY_KEY_REUSED"
    assert alice_id not in other.text


async def test_a_repeated_authenticate_is_refused_as_its_tokens_were_not_kept(
    http,
    rpc,
    admin,  # noqa: F811
) -> None:
    """Tokens are never stored, so a repeat cannot be answered with them: 409, sign in anew."""
    user_id, email, password = await new_user(rpc, admin)
    key = uuid.uuid4().hex
    first = await authenticate(http, email, password, key)
    again = await authenticate(http, email, password, key)
    assert first.status_code == 200, first.text
    assert again.status_code == 409 and error_code(again) == "CONFLICT", again.text
    assert user_id not in again.text and "REDACTED" not in again.text
    fresh = await authenticate(http, email, password, uuid.uuid4().hex)
    assert fresh.status_code == 200 and fresh.json()["user"]["id"] == user_id
