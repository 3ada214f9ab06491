"""A person's first hour with Banyan, as a script: `python -m examples.first_hour`.

Start the platform first (`make run`, with ADMIN_EMAIL and ADMIN_PASSWORD set), then run this
with the same settings. It signs in as the administrator, creates a role and two users, places
orders over REST and GraphQL while watching them arrive over a WebSocket, lists them, sees that
the other user can neither read nor list them, cancels them, rebuilds the read model while
querying it, and reads the registry. Each step prints what it saw; a step that does not get
what it expects stops the script and says why.
"""

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from pipelines.settings import Settings

SHOPPER_PERMISSIONS = ["orders:cancel", "orders:place", "orders:read"]
SKU = "first-hour-tea"


class StepFailed(Exception):
    """The platform did not answer as a new user would expect."""


def expect(condition: bool, what: str, response: httpx.Response | None = None) -> None:
    if not condition:
        seen = f": {response.status_code} {response.text}" if response is not None else ""
        raise StepFailed(f"{what}{seen}")


@dataclass
class FirstHour:
    gateway: str  # e.g. http://127.0.0.1:3003
    discovery: str  # e.g. http://127.0.0.1:3002
    admin_email: str
    admin_password: str
    say: Callable[[str], None] = print
    http: httpx.AsyncClient = field(init=False)
    seen: dict[str, Any] = field(default_factory=dict)  # what each step found, for the tests

    async def run(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as self.http:
            admin = await self.sign_in_as_admin()
            alice, bob = await self.create_shoppers(admin)
            await self.stock_the_shelves(admin)
            await self.place_and_watch_orders(alice)
            await self.list_orders(alice)
            await self.hide_orders_from(bob)
            await self.cancel_orders(alice, bob)
            await self.rebuild_while_querying(alice)
            await self.read_the_registry(admin)
        return self.seen

    async def call(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        response = await self.http.post(f"/api/{path}", json=body, headers=bearer(token))
        expect(response.status_code == 200, f"POST /api/{path}", response)
        self.wrote(int(response.headers.get("x-event-position", 0)))
        return response.json()

    def wrote(self, position: int) -> None:
        """Later queries read at least this far (read-your-writes)."""
        self.seen["position"] = max(position, self.seen.get("position", 0))

    async def query(self, path: str, token: str, **params: Any) -> Any:
        headers = {**bearer(token), "X-Min-Position": str(self.seen.get("position", 0))}
        response = await self.http.get(f"/api/{path}", params=params, headers=headers)
        expect(response.status_code == 200, f"GET /api/{path}", response)
        return response.json()

    async def refused(self, path: str, body: dict[str, Any], token: str, status: int) -> str:
        response = await self.http.post(f"/api/{path}", json=body, headers=bearer(token))
        return refusal(response, f"POST /api/{path}", status)

    async def refused_query(self, path: str, token: str, status: int, **params: Any) -> str:
        response = await self.http.get(f"/api/{path}", params=params, headers=bearer(token))
        return refusal(response, f"GET /api/{path}", status)

    async def sign_in(self, email: str, password: str) -> dict[str, Any]:
        tokens: dict[str, Any] = await self.call(
            "auth/authenticate", {"email": email, "password": password}
        )
        return tokens

    async def sign_in_as_admin(self) -> str:
        tokens = await self.sign_in(self.admin_email, self.admin_password)
        self.seen["admin"] = tokens["user"]["id"]
        user = tokens["user"]
        self.say(f"signed in as {user['email']} with {len(user['permissions'])} permissions")
        return str(tokens["accessToken"])

    async def create_shoppers(self, admin: str) -> tuple[str, str]:
        role = f"shopper-{uuid.uuid4().hex[:6]}"
        await self.call(
            "auth/create-role", {"name": role, "permissions": SHOPPER_PERMISSIONS}, admin
        )
        self.say(f"created the role {role}: {', '.join(SHOPPER_PERMISSIONS)}")
        return await self.create_user(admin, "alice", role), await self.create_user(
            admin, "bob", role
        )

    async def create_user(self, admin: str, name: str, role: str) -> str:
        email, password = f"{name}-{uuid.uuid4().hex[:6]}@example.com", f"{name}-first-hour-pw"
        body = {"email": email, "password": password, "name": name, "roles": [role]}
        self.seen[name] = (await self.call("auth/create-user", body, admin))["userId"]
        tokens = await self.sign_in(email, password)
        permissions = sorted(tokens["user"]["permissions"])
        expect(permissions == SHOPPER_PERMISSIONS, f"{name}'s permissions, got {permissions}")
        self.say(f"created {email} with the role {role}, and signed in as them")
        return str(tokens["accessToken"])

    async def stock_the_shelves(self, admin: str) -> None:
        """The fulfilment flow confirms an order only when the inventory has its stock."""
        grant = {"userId": self.seen["admin"], "permission": "inventory:manage"}
        await self.call("auth/grant-permission", grant, admin)
        manager = (await self.sign_in(self.admin_email, self.admin_password))["accessToken"]
        await self.call("inventory/add-stock", {"sku": SKU, "quantity": 100}, manager)
        self.say(f"granted myself inventory:manage, signed in again and stocked 100 x {SKU}")

    async def place_and_watch_orders(self, alice: str) -> None:
        url = self.gateway.replace("http", "ws", 1) + f"/ws?token={alice}"
        async with websockets.connect(url) as socket:
            await subscribe(socket, {"customerId": self.seen["alice"]})
            placed = [await self.place_over_rest(alice), await self.place_over_graphql(alice)]
            events = [await next_message(socket, "event") for _ in placed]
        received = [event["data"]["orderId"] for event in events]
        expect(received == placed, f"the WebSocket to deliver {placed}, got {received}")
        self.seen["orders"] = placed
        self.say(f"the WebSocket delivered OrderPlaced for {', '.join(received)}")

    async def place_over_rest(self, alice: str) -> str:
        order = await self.call("orders/place-order", self.order(), alice)
        self.say(f"placed {order['orderId']} over REST (event position {self.seen['position']})")
        return str(order["orderId"])

    async def place_over_graphql(self, alice: str) -> str:
        mutation = (
            "mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }"
        )
        body = {"query": mutation, "variables": {"input": self.order()}}
        response = await self.http.post("/graphql", json=body, headers=bearer(alice))
        result = response.json()
        expect(
            response.status_code == 200 and not result.get("errors"),
            "the placeOrder mutation",
            response,
        )
        self.wrote(result["extensions"]["eventPosition"])
        order_id = str(result["data"]["placeOrder"]["orderId"])
        self.say(f"placed {order_id} over GraphQL (event position {self.seen['position']})")
        return order_id

    def order(self) -> dict[str, Any]:
        """An order of the caller's own: the customer is whoever places it."""
        return {"items": [{"sku": SKU, "quantity": 2, "unitPrice": "3.50"}]}

    async def list_orders(self, alice: str) -> None:
        pages = [
            await self.query("orders/list-orders", alice, pageSize=1, page=page) for page in (1, 2)
        ]
        listed = [page["items"][0]["orderId"] for page in pages]
        expect(pages[0]["total"] == 2, f"two orders listed, got {pages[0]['total']}")
        expect(
            sorted(listed) == sorted(self.seen["orders"]),
            f"both orders over two pages, got {listed}",
        )
        self.say(f"listed my orders one per page: {listed}, total {pages[0]['total']}")

    async def hide_orders_from(self, bob: str) -> None:
        """Orders belong to their customer: bob neither reads nor lists alice's."""
        first = self.seen["orders"][0]
        hidden = await self.refused_query("orders/get-order", bob, 404, orderId=first)
        listed = await self.query("orders/list-orders", bob)
        expect(listed["total"] == 0, f"bob to list no orders, got {listed['total']}")
        self.seen["hidden from bob"] = hidden
        self.say(f"bob reading alice's {first}: 404 {hidden}; bob lists {listed['total']} orders")

    async def cancel_orders(self, alice: str, bob: str) -> None:
        first, second = self.seen["orders"]
        cancelled = await self.call(
            "orders/cancel-order", {"orderId": first, "reason": "changed my mind"}, alice
        )
        expect(cancelled["status"] == "cancelled", f"{first} cancelled", None)
        again = await self.refused("orders/cancel-order", {"orderId": first}, alice, 409)
        not_mine = await self.refused("orders/cancel-order", {"orderId": second}, bob, 403)
        self.seen["refusals"] = (again, not_mine)
        self.say(f"cancelled {first}; cancelling it again: 409 {again}")
        self.say(f"bob cancelling alice's {second}: 403 {not_mine}")

    async def rebuild_while_querying(self, alice: str) -> None:
        rebuild = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipelines.cli", "projections", "rebuild", "order_summary",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        answered = 0
        while rebuild.returncode is None:
            await self.query("orders/get-order", alice, orderId=self.seen["orders"][1])
            answered += 1
            await asyncio.sleep(0.5)  # a person's pace, well inside the rate limit
        output = (await rebuild.communicate())[0].decode()
        expect(rebuild.returncode == 0, f"the rebuild to succeed, it said: {output}")
        summary = await self.query("orders/get-order", alice, orderId=self.seen["orders"][0])
        expect(summary["status"] == "cancelled", "the rebuilt read model to show the cancellation")
        self.seen["answered during rebuild"] = answered
        self.say(f"rebuilt order_summary ({output.splitlines()[-1]})")
        self.say(f"{answered} queries were answered during the rebuild")

    async def read_the_registry(self, admin: str) -> None:
        response = await self.http.get(
            f"{self.discovery}/api/services", headers={"Authorization": f"Bearer {admin}"}
        )
        expect(response.status_code == 200, "GET /api/services from discovery", response)
        services = {service["name"]: service for service in response.json()["services"]}
        self.seen["services"] = sorted(services)
        self.say(f"the registry lists: {', '.join(sorted(services))}")


def refusal(response: httpx.Response, request: str, status: int) -> str:
    """The error code of a refused request, which must have been refused with `status`."""
    expect(response.status_code == status, f"{request} to be refused with {status}", response)
    return str(response.json()["error"]["code"])


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def subscribe(socket: Any, filters: dict[str, str]) -> None:
    await socket.send(
        json.dumps({"type": "subscribe", "eventType": "OrderPlaced", "filters": filters})
    )
    await next_message(socket, "subscribed")


async def next_message(socket: Any, kind: str, timeout: float = 15) -> dict[str, Any]:
    """The next message of `kind`, skipping others (such as `authenticated`)."""
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = json.loads(await socket.recv())
            if message["type"] == kind:
                return message
            expect(message["type"] != "error", f"a WebSocket {kind}, got {message}")


def main() -> int:
    settings = Settings()
    if not settings.admin_email or settings.admin_password is None:
        print("set ADMIN_EMAIL and ADMIN_PASSWORD as the platform got them", file=sys.stderr)
        return 2
    hour = FirstHour(
        f"http://127.0.0.1:{settings.gateway_port}",
        f"http://127.0.0.1:{settings.discovery_port}",
        settings.admin_email,
        settings.admin_password.get_secret_value(),
    )
    try:
        asyncio.run(hour.run())
    except StepFailed as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
