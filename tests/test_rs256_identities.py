"""With RS256 only auth holds the private key: the gateway and the services start and work
with the public key alone, and a service obtains its token from auth with its credential."""

import asyncio
import re
import sys
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from auth import service as auth_service
from examples.fulfilment import service as fulfilment
from examples.inventory import service as inventory
from examples.inventory.contracts import AddStock
from examples.orders import service as orders
from examples.orders.contracts import PlaceOrder
from pipelines import Caller
from pipelines.errors import Unauthorized
from pipelines.identity import TokenCodec
from pipelines.service_identity import ServiceIdentity
from pipelines.settings import Settings
from tests.conftest import eventually, started
from tests.gateway_rig import running_gateway
from tests.test_auth import ADMIN_EMAIL, ADMIN_PASSWORD, rs256_auth, rsa_key_pair

FULFILMENT_CALLS = ["inventory:reserve", "orders:confirm", "orders:reject"]
ITEMS = [{"sku": "rs256-tea", "quantity": 2, "unitPrice": "3.00"}]


async def mint_credential(env: dict[str, str]) -> str:
    """`banyan services credential fulfilment`, run where the private key is."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "services", "credential", "fulfilment",
        env={**env, "SERVICE_MODULES": "examples.fulfilment"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    return out.decode().strip()


async def test_only_auth_holds_the_private_key(settings: Settings) -> None:
    async with rs256_auth(settings) as auth:
        public_only = settings.model_copy(
            update={
                "rabbitmq_url": auth.isolated["RABBITMQ_URL"],
                "database_schema": auth.isolated["DATABASE_SCHEMA"],
                "jwt_algorithm": "RS256",
                "jwt_public_key": auth.public,
                "jwt_private_key": "",
                "jwt_secret": "",
            }
        )
        credential = await mint_credential(auth.env)
        services: list[Any] = []
        try:
            services.append(orders.instance(public_only))  # with the relay: OrderPlaced goes out
            await services[0].start()
            services.append(await started(inventory, public_only))
            with_credential = {"service_credential": SecretStr(credential)}
            services.append(
                await started(fulfilment, public_only.model_copy(update=with_credential))
            )
            await _check(services, public_only, auth.env["JWT_PRIVATE_KEY"], credential)
        finally:
            for instance in reversed(services):
                await instance.stop()


async def _check(services: list[Any], public_only: Settings, private: str, credential: str) -> None:
    orders_instance, _, fulfilment_instance = services
    assert not fulfilment_instance.runtime.tokens.can_sign
    own = await fulfilment_instance.runtime.service_token()  # traded with auth
    claims = jwt.decode(own, options={"verify_signature": False})
    assert (claims["sub"], sorted(claims["permissions"])) == (
        "service:fulfilment",
        FULFILMENT_CALLS,
    )
    assert jwt.get_unverified_header(own)["alg"] == "RS256"

    rpc = orders_instance.runtime.rpc
    placed = await rpc.send("orders", PlaceOrder.model_validate({"items": ITEMS}), token=credential)
    assert placed.error().code == "INVALID_TOKEN"  # a credential is no access token

    operator = TokenCodec(public_only.model_copy(update={"jwt_private_key": private}))
    staff = operator.issue(Caller("rs256-staff", permissions=frozenset({"inventory:manage"})))
    (await rpc.send("inventory", AddStock(sku="rs256-tea", quantity=5), token=staff)).result()

    unlimited = public_only.model_copy(update={"rate_limit_anonymous": 1000})  # other tests' too
    async with running_gateway(unlimited, [auth_service, orders, inventory]) as (app, http):
        assert not app.state.gateway.auth.codec.can_sign
        signed_in = await http.post(
            "/api/auth/authenticate", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        bearer = {"Authorization": f"Bearer {signed_in.json()['accessToken']}"}
        order = await http.post("/api/orders/place-order", json={"items": ITEMS}, headers=bearer)
        assert order.status_code == 200, order.text
        order_id = order.json()["orderId"]

        async def confirmed() -> bool:
            got = await http.get(
                "/api/orders/get-order", params={"orderId": order_id}, headers=bearer
            )
            return got.status_code == 200 and got.json()["status"] == "confirmed"

        await eventually(confirmed, timeout=30, what="fulfilment to confirm the order")


@pytest.mark.parametrize(
    ("service", "permissions", "days", "problem"),
    [
        ("fulfilment", FULFILMENT_CALLS, 1, None),
        ("fulfilment", FULFILMENT_CALLS[:2], 1, "lacks orders:reject, which its calls= need"),
        ("orders", FULFILMENT_CALLS, 1, "SERVICE_CREDENTIAL is service:orders's"),
        ("fulfilment", FULFILMENT_CALLS, -1, "invalid service credential: Signature has expired"),
        (None, None, None, "set SERVICE_CREDENTIAL (banyan services credential fulfilment"),
    ],
)
def test_a_service_checks_its_credential_with_the_public_key(
    settings: Settings, service: str | None, permissions: list[str], days: int, problem: str
) -> None:
    private, public = rsa_key_pair()
    rs256 = {"jwt_algorithm": "RS256", "jwt_public_key": public, "jwt_secret": ""}
    auth = TokenCodec(settings.model_copy(update={**rs256, "jwt_private_key": private}))
    credential = None
    if service is not None:
        credential = SecretStr(auth.issue_credential(service, permissions, days))
    public_only = settings.model_copy(update={**rs256, "service_credential": credential})
    identity = ServiceIdentity(fulfilment.calls, public_only, TokenCodec(public_only))
    found = identity.credential_problem()
    assert found is None if problem is None else problem in (found or "")
    if problem is not None and "lacks" not in problem:  # it serves the calls it covers
        with pytest.raises(Unauthorized, match=re.escape(problem)):
            asyncio.run(identity.token(None))  # refused before anything is sent
