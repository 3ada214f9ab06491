"""The inventory service's rules, in memory: never oversold, idempotent per (order, SKU)."""

from examples.inventory import service
from examples.inventory.contracts import (
    GetStock,
    Release,
    ReleaseStock,
    Reservation,
    ReserveStock,
    StockAdded,
    StockRejected,
    StockReleased,
    StockReserved,
    StockView,
)
from examples.inventory.domain import Stock
from pipelines import NotFound
from pipelines.testing import TestKit

TEA = StockAdded(sku="tea", quantity=5)


async def test_a_reservation_holds_units() -> None:
    await (
        TestKit(service)
        .given(Stock, "tea", TEA)
        .when(ReserveStock(order_id="o-1", sku="tea", quantity=3))
        .then(
            StockReserved(order_id="o-1", sku="tea", quantity=3),
            result=Reservation(order_id="o-1", sku="tea", quantity=3, reserved=True),
        )
    )


async def test_a_reservation_beyond_the_stock_is_refused_and_recorded() -> None:
    reason = "only 5 of tea available, 6 wanted"
    await (
        TestKit(service)
        .given(Stock, "tea", TEA)
        .when(ReserveStock(order_id="o-1", sku="tea", quantity=6))
        .then(
            StockRejected(order_id="o-1", sku="tea", quantity=6, reason=reason),
            result=Reservation(
                order_id="o-1", sku="tea", quantity=6, reserved=False, reason=reason
            ),
        )
    )


async def test_two_orders_racing_for_the_last_units_never_oversell() -> None:
    """Another order's reservation lands between this one's read and its append: the
    platform decides this one again on the stock left, and refuses it."""
    reason = "only 1 of tea available, 3 wanted"
    await (
        TestKit(service)
        .given(Stock, "tea", TEA)
        .meanwhile(Stock, "tea", StockReserved(order_id="o-2", sku="tea", quantity=4))
        .when(ReserveStock(order_id="o-1", sku="tea", quantity=3))
        .then(StockRejected(order_id="o-1", sku="tea", quantity=3, reason=reason))
    )


async def test_a_release_gives_the_units_back_and_bars_a_late_reservation() -> None:
    kit = TestKit(service).given(
        Stock, "tea", TEA, StockReserved(order_id="o-1", sku="tea", quantity=2)
    )
    await kit.when(ReleaseStock(order_id="o-1", sku="tea")).then(
        StockReleased(order_id="o-1", sku="tea", quantity=2),
        result=Release(order_id="o-1", sku="tea", released=2),
    )
    await kit.when(GetStock(sku="tea")).then(
        StockView(sku="tea", available=5, reserved=0, reservations={})
    )
    late = await kit.when(ReserveStock(order_id="o-1", sku="tea", quantity=1))
    assert late.result["reserved"] is False and "already released" in late.result["reason"]


async def test_there_is_no_stock_of_an_unknown_sku() -> None:
    await TestKit(service).when(GetStock(sku="coffee")).then(NotFound)
