"""`Idempotency-Key` belongs to one caller and one operation, through the gateway (REST and
GraphQL), over real HTTP, RabbitMQ, PostgreSQL and Redis."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from auth import service as auth_service
from examples.orders import service as orders_service
from examples.orders.contracts import PlaceOrder
from gateway.breaker import CLOSED
from tests.gateway_rig import Served, running_gateway
from tests.test_auth import admin, auth, auth_settings, new_user  # noqa: F401 (fixtures)
from tests.test_gateway import ALL, ITEMS, bearer
from tests.test_gateway_graphql import PLACE, graphql


@pytest.fixture(scope="module")
async def served(settings, orders, auth) -> AsyncIterator[Served]:  # noqa: F811
    quick = settings.model_copy(update={"command_timeout": 5.0, "rate_limit_anonymous": 1000})
    async with running_gateway(quick, [orders_service, auth_service]) as served:
        yield served


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


# --- keys at the edge ------------------------------------------------------------------------


async def test_keys_are_checked_at_the_edge(served: Served, token) -> None:
    app, http = served
    jwt = token("idem-frank", *ALL)
    for bad in ("k" * 256, "tab\there", "caf\u00e9"):
        headers = {**bearer(jwt), "Idempotency-Key": bad}  # sent as UTF-8 bytes
        refused = await http.post(
            "/api/orders/place-order",
            json={"customerId": "idem-frank", "items": ITEMS},
            headers={name.encode(): value.encode("utf-8") for name, value in headers.items()},
        )
        assert refused.status_code == 400, (bad, refused.text)
        assert error_code(refused) == "VALIDATION_ERROR"
        assert "Idempotency-Key" in refused.json()["error"]["message"]
    for _ in range(12):
        await place(http, "idem-frank", jwt, "k" * 300)
    assert app.state.gateway.breakers.get("orders").state == CLOSED
    longest = await place(http, "idem-frank", jwt, "k" * 255)
    assert longest.status_code == 200, longest.text


async def test_the_response_carries_the_key(http, token) -> None:
    jwt = token("idem-grace", *ALL)
    assigned = await place(http, "idem-grace", jwt, None)
    key = assigned.headers["Idempotency-Key"]
    assert key
    retried = await place(http, "idem-grace", jwt, key)
    assert retried.json() == assigned.json()
    given = await place(http, "idem-grace", jwt, "my-key-" + uuid.uuid4().hex)
    assert given.headers["Idempotency-Key"].startswith("my-key-")


async def test_a_long_key_on_the_bus_is_sent_as_its_digest(rpc, token, orders) -> None:
    """Senders on the bus (`ctx.send(key=...)`, flows) may use keys longer than a message id."""
    jwt, key = token("idem-bus", *ALL), "k" * 300 + uuid.uuid4().hex
    order = PlaceOrder.model_validate({"customerId": "idem-bus", "items": ITEMS})
    first = await rpc.send("orders", order, token=jwt, message_id=key)
    again = await rpc.send("orders", order, token=jwt, message_id=key)
    assert first.result() == again.result()


# --- GraphQL ---------------------------------------------------------------------------------


async def place_by_graphql(
    http: httpx.AsyncClient, user: str, key: str | None, query: str = PLACE, quantity: int = 2
) -> httpx.Response:
    order = {"input": {"customerId": user, "items": [{**ITEMS[0], "quantity": quantity}]}}
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await graphql(http, query, token_of[user], variables=order, headers=headers)


token_of: dict[str, str] = {}


@pytest.fixture(autouse=True)
def graphql_users(token) -> None:
    for user in ("gql-idem-alice", "gql-idem-bob"):
        token_of[user] = token(user, *ALL)


def order_id(response: httpx.Response, field: str = "placeOrder") -> str:
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return str(body["data"][field]["orderId"])


async def test_graphql_keys_belong_to_one_caller(http) -> None:
    key = uuid.uuid4().hex
    alice = order_id(await place_by_graphql(http, "gql-idem-alice", key))
    bob = order_id(await place_by_graphql(http, "gql-idem-bob", key))
    assert alice != bob
    other = await place_by_graphql(http, "gql-idem-alice", key, quantity=5)
    assert other.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_graphql_keys_are_checked_and_returned(http) -> None:
    refused = await place_by_graphql(http, "gql-idem-alice", "k" * 256)
    assert refused.status_code == 400, refused.text
    assert "Idempotency-Key" in refused.json()["errors"][0]["message"]
    aliased = (
        "mutation Place($input: PlaceOrderInput!) { "
        + "a" * 200
        + ": placeOrder(input: $input) { orderId } }"
    )
    longest = "k" * 255
    first = order_id(await place_by_graphql(http, "gql-idem-alice", longest, aliased), "a" * 200)
    again = order_id(await place_by_graphql(http, "gql-idem-alice", longest, aliased), "a" * 200)
    assert first == again
    assigned = await place_by_graphql(http, "gql-idem-alice", None)
    key = assigned.headers["Idempotency-Key"]
    retried = await place_by_graphql(http, "gql-idem-alice", key)
    assert order_id(retried) == order_id(assigned)


async def test_openapi_documents_the_key(http) -> None:
    document = (await http.get("/openapi.json")).json()
    operation = document["paths"]["/api/orders/place-order"]["post"]
    names = [p["name"] for p in operation.get("parameters", [])]
    assert "Idempotency-Key" in names
    assert "422" in operation["responses"]
    query = document["paths"]["/api/orders/get-order"]["get"]
    assert "Idempotency-Key" not in [p["name"] for p in query.get("parameters", [])]
