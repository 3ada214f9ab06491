"""Objects belong to someone: a customer sees and acts on their own orders, an orders:admin on
anyone's, over REST and GraphQL, and a cached answer never crosses from one caller to another.
"""

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from examples.orders.contracts import GetOrder
from pipelines.identity import Caller
from pipelines.querycache import QueryCache
from pipelines.rpc import RpcClient
from tests.test_gateway import ALL, ITEMS, bearer, close, serve

ADMIN = "orders:admin"


@pytest.fixture(scope="module")
async def http(settings, orders) -> AsyncIterator[httpx.AsyncClient]:
    app, server, client = await serve(settings, rate_limit_anonymous=1000)
    yield client
    await close(app, server, client)


class Shoppers:
    """Two customers and an administrator, with ids of their own for this test."""

    def __init__(self, token: Callable[..., str]) -> None:
        run = uuid.uuid4().hex[:8]
        self.alice, self.bob, self.admin = f"alice-{run}", f"bob-{run}", f"admin-{run}"
        self.tokens = {
            self.alice: token(self.alice, *ALL),
            self.bob: token(self.bob, *ALL),
            self.admin: token(self.admin, *ALL, ADMIN),
        }

    def auth(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who])


@pytest.fixture
def people(token) -> Shoppers:
    return Shoppers(token)


async def place(http: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await http.post("/api/orders/place-order", json={"items": ITEMS, **body}, headers=auth)


async def placed(http: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> tuple[str, str]:
    """(order id, event position) of an order placed by `auth`."""
    response = await place(http, auth, **body)
    assert response.status_code == 200, response.text
    return response.json()["orderId"], response.headers["X-Event-Position"]


async def get(
    http: httpx.AsyncClient, path: str, auth: dict[str, str], position: str = "0", **params: Any
) -> httpx.Response:
    headers = {**auth, "X-Min-Position": position}
    return await http.get(f"/api/orders/{path}", params=params, headers=headers)


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def order_ids(page: httpx.Response) -> set[str]:
    assert page.status_code == 200, page.text
    return {item["orderId"] for item in page.json()["items"]}


async def test_the_customer_is_the_caller_who_can_then_cancel(http, people) -> None:
    order_id, position = await placed(http, people.auth(people.alice))
    got = await get(http, "get-order", people.auth(people.alice), position, orderId=order_id)
    assert got.status_code == 200 and got.json()["customerId"] == people.alice
    cancelled = await http.post(
        "/api/orders/cancel-order", json={"orderId": order_id}, headers=people.auth(people.alice)
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


async def test_nobody_places_in_someone_elses_name_but_an_admin(http, people) -> None:
    refused = await place(http, people.auth(people.bob), customerId=people.alice)
    assert code(refused) == (403, "INSUFFICIENT_PERMISSIONS")
    assert (await place(http, people.auth(people.bob), customerId=people.bob)).status_code == 200
    order_id, position = await placed(http, people.auth(people.admin), customerId=people.alice)
    mine = await get(http, "get-order", people.auth(people.alice), position, orderId=order_id)
    assert mine.status_code == 200 and mine.json()["customerId"] == people.alice


async def test_someone_elses_order_is_not_found_even_once_cached(http, people) -> None:
    order_id, position = await placed(http, people.auth(people.alice))
    first = await get(http, "get-order", people.auth(people.alice), position, orderId=order_id)
    again = await get(http, "get-order", people.auth(people.alice), orderId=order_id)
    assert first.status_code == 200 and again.headers.get("X-Cache") == "hit"
    theirs = await get(http, "get-order", people.auth(people.bob), orderId=order_id)
    assert code(theirs) == (404, "NOT_FOUND")
    assert theirs.json()["error"]["message"] == f"order {order_id} does not exist"
    admin = await get(http, "get-order", people.auth(people.admin), orderId=order_id)
    assert admin.status_code == 200 and admin.json()["orderId"] == order_id


async def test_a_customer_lists_only_their_own_orders_even_once_cached(http, people) -> None:
    order_id, _ = await placed(http, people.auth(people.alice))
    _, position = await placed(http, people.auth(people.bob))  # read after both: no miss later
    first = await get(http, "list-orders", people.auth(people.alice), position)
    again = await get(http, "list-orders", people.auth(people.alice), position)
    assert order_ids(first) == {order_id} and again.headers.get("X-Cache") == "hit"
    theirs = await get(http, "list-orders", people.auth(people.bob), position)
    assert order_id not in order_ids(theirs)
    assert {o["customerId"] for o in theirs.json()["items"]} == {people.bob}
    named = await get(http, "list-orders", people.auth(people.bob), customerId=people.alice)
    assert code(named) == (403, "INSUFFICIENT_PERMISSIONS")
    own = await get(http, "list-orders", people.auth(people.bob), customerId=people.bob)
    assert order_id not in order_ids(own)
    admin = await get(http, "list-orders", people.auth(people.admin), customerId=people.alice)
    assert order_ids(admin) == {order_id}
    everyone = await get(http, "list-orders", people.auth(people.admin), pageSize=100)
    assert everyone.json()["total"] >= 2


async def test_the_service_never_serves_one_callers_cached_answer_to_another(
    rpc: RpcClient, http, people
) -> None:
    order_id, position = await placed(http, people.auth(people.alice))
    query = GetOrder(order_id=order_id)
    alice = people.tokens[people.alice]
    after: dict[str, Any] = {"x-min-position": position}  # a header: no keyword argument
    first = await rpc.send("orders", query, token=alice, **after)
    again = await rpc.send("orders", query, token=alice)
    assert first.ok and again.headers.get("x-cache") == "hit"
    theirs = await rpc.send("orders", query, token=people.tokens[people.bob])
    assert not theirs.ok and theirs.error().code == "NOT_FOUND"


async def test_an_event_invalidates_every_callers_cached_answer(http, people) -> None:
    order_id, position = await placed(http, people.auth(people.alice))
    for who in (people.alice, people.admin):
        await get(http, "get-order", people.auth(who), position, orderId=order_id)
        cached = await get(http, "get-order", people.auth(who), orderId=order_id)
        assert cached.headers.get("X-Cache") == "hit", who
    cancelled = await http.post(
        "/api/orders/cancel-order", json={"orderId": order_id}, headers=people.auth(people.admin)
    )
    later = cancelled.headers["X-Event-Position"]
    for who in (people.alice, people.admin):
        now = await get(http, "get-order", people.auth(who), later, orderId=order_id)
        assert now.json()["status"] == "cancelled", who


def test_only_a_shared_answer_is_kept_for_every_caller() -> None:
    cache = QueryCache(Redis(), "p")
    alice, bob = Caller("alice"), Caller("bob")

    def key(caller: Caller | None, shared: bool) -> str:
        return cache.base_key("orders", "GetOrder", b"{}", caller, shared=shared)

    demoted = Caller("alice", permissions=frozenset({"orders:read"}))
    assert len({key(alice, False), key(bob, False), key(None, False), key(demoted, False)}) == 4
    assert key(alice, True) == key(bob, True) == key(None, True)


PLACE = "mutation P($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }"
GET = "query G($id: String!) { getOrder(input: {orderId: $id}) { orderId customerId } }"
LIST = "query L($who: String) { listOrders(input: {customerId: $who}) { items { orderId } } }"


async def graphql(
    http: httpx.AsyncClient, auth: dict[str, str], query: str, **variables: Any
) -> dict[str, Any]:
    body = {"query": query, "variables": variables}
    response = await http.post("/graphql", json=body, headers=auth)
    return dict(response.json())


def error_code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


async def test_over_graphql_too(http, people) -> None:
    alice, bob, admin = (people.auth(p) for p in (people.alice, people.bob, people.admin))
    placing = await graphql(http, alice, PLACE, input={"items": ITEMS})
    order_id = placing["data"]["placeOrder"]["orderId"]
    position = str(placing["extensions"]["eventPosition"])
    mine = await graphql(http, {**alice, "X-Min-Position": position}, GET, id=order_id)
    assert mine["data"]["getOrder"]["customerId"] == people.alice
    assert error_code(await graphql(http, bob, GET, id=order_id)) == "NOT_FOUND"
    listed = await graphql(http, {**bob, "X-Min-Position": position}, LIST)
    assert order_id not in {o["orderId"] for o in listed["data"]["listOrders"]["items"]}
    named = await graphql(http, bob, LIST, who=people.alice)
    assert error_code(named) == "INSUFFICIENT_PERMISSIONS"
    in_her_name = {"customerId": people.alice, "items": ITEMS}
    assert (
        error_code(await graphql(http, bob, PLACE, input=in_her_name)) == "INSUFFICIENT_PERMISSIONS"
    )
    theirs = await graphql(http, admin, LIST, who=people.alice)
    assert {o["orderId"] for o in theirs["data"]["listOrders"]["items"]} == {order_id}
    for_her = await graphql(http, admin, PLACE, input=in_her_name)
    assert "errors" not in for_her, for_her
