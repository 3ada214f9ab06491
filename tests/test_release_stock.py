"""Cancelling an order gives back the stock the fulfilment flow reserved for it, once."""

from collections.abc import Awaitable, Callable

import pytest

from examples.fulfilment import service as fulfilment_service
from examples.inventory import service as inventory_service
from examples.inventory.contracts import ReleaseStock, ReserveStock
from examples.orders.contracts import CancelOrder
from flows.journal import steps_of
from pipelines.database import Pool
from tests.conftest import FULFILMENT_TRIGGERS, eventually, purge, started
from tests.test_flows import Shop  # importing it also makes the engines tick fast

Cancel = Callable[[str], Awaitable[None]]


@pytest.fixture
def shop(orders, rpc, token) -> Shop:
    return Shop(rpc, token, orders.runtime.pool)


@pytest.fixture
def cancel(rpc, token) -> Cancel:
    customer = token("shopper", "orders:cancel")  # the customer Shop places its orders for

    async def send(order: str) -> None:
        (await rpc.send("orders", CancelOrder(order_id=order), token=customer)).result()

    return send


async def finished(pool: Pool, *runs: str) -> bool:
    done = await pool.fetchval(
        "SELECT count(*) FROM flow_runs WHERE id = ANY($1::text[]) AND finished_at IS NOT NULL",
        list(runs),
    )
    return bool(done == len(runs))


async def sent(pool: Pool, run: str, steps: int) -> bool:
    return len(await steps_of(pool, run)) == steps


async def nothing_held(shop: Shop, stock: dict[str, int]) -> None:
    for sku, units in stock.items():
        now = await shop.stock(sku)
        assert (now["available"], now["reserved"], now["reservations"]) == (units, 0, {}), sku


async def test_cancelling_a_confirmed_order_gives_its_stock_back_once(
    shop, inventory, fulfilment, cancel, rpc, token
) -> None:
    apples, pears = await shop.sku(10), await shop.sku(5)
    order = await shop.place((apples, 2), (pears, 1), (apples, 1))
    await eventually(lambda: finished(shop.pool, f"order-fulfilment:{order}"), what="fulfilment")
    assert [e["type"] for e in await shop.final_events(order)] == ["OrderConfirmed"]
    assert (await shop.stock(apples))["available"] == 7

    await cancel(order)
    release = f"order-release:{order}"
    await eventually(lambda: finished(shop.pool, release), what="the release to finish")
    status = await shop.pool.fetchval("SELECT status FROM flow_runs WHERE id = $1", release)
    assert status == "completed"
    steps = {s.step: (s.status, s.result["released"]) for s in await steps_of(shop.pool, release)}
    assert steps == {f"release {apples}": ("done", 3), f"release {pears}": ("done", 1)}
    await nothing_held(shop, {apples: 10, pears: 5})

    picker = token("picker", "inventory:reserve")
    again = await rpc.send("inventory", ReleaseStock(order_id=order, sku=apples), token=picker)
    assert again.result()["released"] == 0
    await nothing_held(shop, {apples: 10, pears: 5})
    released = await shop.pool.fetch(
        "SELECT data->>'quantity' AS units FROM events WHERE aggregate_id = $1 "
        "AND event_type = 'StockReleased'",
        apples,
    )
    assert [r["units"] for r in released] == ["3"]


async def test_an_order_cancelled_while_its_stock_is_being_reserved_keeps_nothing(
    settings, shop, fulfilment, cancel
) -> None:
    """Inventory is away while both flows send: it then gets the reservations and the releases
    in any order, and whichever comes first, nothing stays reserved for the order."""
    stockroom = await started(inventory_service, settings)
    apples, pears = await shop.sku(10), await shop.sku(5)
    await stockroom.stop()
    order = await shop.place((apples, 2), (pears, 1))
    runs = f"order-fulfilment:{order}", f"order-release:{order}"
    await eventually(lambda: sent(shop.pool, runs[0], 2), what="the reservations to be sent")
    await cancel(order)
    await eventually(lambda: sent(shop.pool, runs[1], 2), what="the releases to be sent")

    stockroom = await started(inventory_service, settings)
    try:
        await eventually(lambda: finished(shop.pool, *runs), timeout=30, what="both runs")
        await nothing_held(shop, {apples: 10, pears: 5})
        assert await shop.final_events(order) == []  # neither confirmed nor rejected
    finally:
        await stockroom.stop()


async def test_an_order_cancelled_with_some_lines_reserved_keeps_nothing(
    settings, shop, inventory, cancel, token, rpc
) -> None:
    """Cancelled when one of its two lines is reserved: both flows then run side by side, and
    whichever reaches inventory first, nothing stays reserved for the order."""
    await (await started(fulfilment_service, settings)).stop()  # its queues wait for it now
    for queue in FULFILMENT_TRIGGERS:
        await purge(settings, queue)
    apples, pears = await shop.sku(10), await shop.sku(5)
    order = await shop.place((apples, 2), (pears, 1))
    picker = token("picker", "inventory:reserve")
    first_line = ReserveStock(order_id=order, sku=apples, quantity=2)  # as the flow sends it
    assert (await rpc.send("inventory", first_line, token=picker)).result()["reserved"] is True
    await cancel(order)

    engine = await started(fulfilment_service, settings)
    try:
        runs = f"order-fulfilment:{order}", f"order-release:{order}"
        await eventually(lambda: finished(shop.pool, *runs), what="both runs")
        await nothing_held(shop, {apples: 10, pears: 5})
        assert await shop.final_events(order) == []
    finally:
        await engine.stop()
