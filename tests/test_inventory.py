"""The inventory service: stock per SKU, reserved and released per order, never oversold."""

import asyncio
import random
import uuid

import pytest

from examples.inventory import service as inventory_service
from examples.inventory.contracts import AddStock, GetStock, ReleaseStock, ReserveStock
from flows.answers import worth_retrying
from pipelines.contracts import Contract
from pipelines.errors import Forbidden, NotFound
from pipelines.rpc import Response, RpcClient

CLERK = ("inventory:manage", "inventory:reserve", "inventory:read")


@pytest.fixture(scope="module")
async def inventory(settings):
    instance = inventory_service.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
def clerk(inventory, rpc: RpcClient, token):
    auth = token("clerk", *CLERK)

    async def send(message: Contract) -> Response:
        """The answer, asked again (the same message id) while it is only a version clash."""
        message_id = uuid.uuid4().hex
        for _ in range(50):
            reply = await rpc.send("inventory", message, token=auth, message_id=message_id)
            if reply.ok or not worth_retrying(reply.error()):
                return reply
        raise AssertionError(f"{message.message_type()} kept clashing")

    return send


async def new_sku(clerk, units: int) -> str:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    (await clerk(AddStock(sku=sku, quantity=units))).result()
    return sku


async def test_reserve_and_release_move_units_between_available_and_reserved(clerk) -> None:
    sku = await new_sku(clerk, 10)
    reserved = (await clerk(ReserveStock(order_id="o-1", sku=sku, quantity=4))).result()
    assert reserved == {"orderId": "o-1", "sku": sku, "quantity": 4, "reserved": True,
                        "reason": None}  # fmt: skip
    view = (await clerk(GetStock(sku=sku))).result()
    assert view == {"sku": sku, "available": 6, "reserved": 4, "reservations": {"o-1": 4}}
    released = (await clerk(ReleaseStock(order_id="o-1", sku=sku))).result()
    assert released["released"] == 4
    view = (await clerk(GetStock(sku=sku))).result()
    assert (view["available"], view["reserved"], view["reservations"]) == (10, 0, {})


async def test_reserve_and_release_are_idempotent_per_order_and_sku(clerk, inventory) -> None:
    sku = await new_sku(clerk, 10)
    for _ in range(3):  # a new message id each time: the (order, SKU) pair makes it one
        reply = await clerk(ReserveStock(order_id="o-2", sku=sku, quantity=3))
        assert reply.result()["reserved"] is True and reply.result()["quantity"] == 3
    assert (await clerk(GetStock(sku=sku))).result()["available"] == 7
    releases = [await clerk(ReleaseStock(order_id="o-2", sku=sku)) for _ in range(3)]
    assert [r.result()["released"] for r in releases] == [3, 0, 0]
    types = await inventory.runtime.pool.fetch(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY version", sku
    )
    assert [r["event_type"] for r in types] == ["StockAdded", "StockReserved", "StockReleased"]


async def test_a_shortage_is_rejected_with_its_reason_and_changes_nothing(clerk, inventory) -> None:
    sku = await new_sku(clerk, 2)
    reply = (await clerk(ReserveStock(order_id="o-3", sku=sku, quantity=5))).result()
    assert reply["reserved"] is False
    assert reply["reason"] == f"only 2 of {sku} available, 5 wanted"
    assert (await clerk(GetStock(sku=sku))).result()["available"] == 2
    rejected = await inventory.runtime.pool.fetchval(
        "SELECT data FROM events WHERE aggregate_id = $1 AND event_type = 'StockRejected'", sku
    )
    assert rejected == {"orderId": "o-3", "sku": sku, "quantity": 5, "reason": reply["reason"]}


async def test_a_release_before_the_reservation_refuses_the_late_reservation(clerk) -> None:
    """What makes an undo safe when its step's command is still on its way."""
    sku = await new_sku(clerk, 5)
    assert (await clerk(ReleaseStock(order_id="o-4", sku=sku))).result()["released"] == 0
    late = (await clerk(ReserveStock(order_id="o-4", sku=sku, quantity=1))).result()
    assert late["reserved"] is False and "already released" in late["reason"]
    assert (await clerk(GetStock(sku=sku))).result()["available"] == 5


async def test_unknown_skus_and_missing_permissions_are_refused(clerk, rpc, token) -> None:
    with pytest.raises(NotFound):
        (await clerk(ReserveStock(order_id="o-5", sku="no-such-sku", quantity=1))).result()
    with pytest.raises(NotFound):
        (await clerk(ReleaseStock(order_id="o-5", sku="no-such-sku"))).result()
    reserve_only = token("picker", "inventory:reserve")
    with pytest.raises(Forbidden):
        (await rpc.send("inventory", AddStock(sku="x", quantity=1), token=reserve_only)).result()


async def test_concurrent_reservations_never_oversell(clerk) -> None:
    sku = await new_sku(clerk, 50)
    wanted = {f"order-{i}": random.Random(i).randint(1, 3) for i in range(60)}
    replies = await asyncio.gather(
        *(clerk(ReserveStock(order_id=o, sku=sku, quantity=q)) for o, q in wanted.items())
    )
    answers = [r.result() for r in replies]
    granted = {a["orderId"]: a["quantity"] for a in answers if a["reserved"]}
    view = (await clerk(GetStock(sku=sku))).result()
    assert view["reservations"] == granted
    assert view["reserved"] == sum(granted.values()) <= 50
    assert view["available"] + view["reserved"] == 50
    assert len(granted) < len(wanted)  # the stock really was scarce
    assert all(not a["reserved"] for a in answers if a["orderId"] not in granted)
