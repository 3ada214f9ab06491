"""The order flows, in memory, with the orders and inventory services they drive."""

from decimal import Decimal

from examples import fulfilment, inventory, orders
from examples.inventory.contracts import (
    ReleaseStock,
    ReserveStock,
    StockAdded,
    StockRejected,
    StockReleased,
    StockReserved,
)
from examples.inventory.domain import Stock
from examples.orders.contracts import (
    ConfirmOrder,
    GetOrder,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderRejected,
    PlaceOrder,
    RejectOrder,
)
from pipelines.testing import TestKit, user

ANN = user("ann", "orders:place", "orders:read")
LINES = [
    OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.50")),
    OrderLine(sku="cups", quantity=4, unit_price=Decimal("2.00")),
]


def shop() -> TestKit:
    return TestKit(orders.service, inventory.service, fulfilment.service)


async def test_an_order_whose_stock_is_reserved_is_confirmed() -> None:
    outcome = await (
        shop()
        .given(Stock, "tea", StockAdded(sku="tea", quantity=10))
        .given(Stock, "cups", StockAdded(sku="cups", quantity=10))
        .when(PlaceOrder(items=LINES), caller=ANN)
    )
    order = outcome.recorded(OrderPlaced)[0].order_id
    outcome.then(
        outcome.recorded(OrderPlaced)[0],
        StockReserved(order_id=order, sku="tea", quantity=2),
        StockReserved(order_id=order, sku="cups", quantity=4),
        OrderConfirmed(order_id=order, customer_id="ann"),
        sent=[
            ReserveStock(order_id=order, sku="tea", quantity=2),
            ReserveStock(order_id=order, sku="cups", quantity=4),
            ConfirmOrder(order_id=order),
        ],
    )


async def test_a_shortage_releases_what_was_reserved_and_rejects_the_order() -> None:
    kit = (
        shop()
        .given(Stock, "tea", StockAdded(sku="tea", quantity=10))
        .given(Stock, "cups", StockAdded(sku="cups", quantity=1))
    )
    outcome = await kit.when(PlaceOrder(items=LINES), caller=ANN)
    order = outcome.recorded(OrderPlaced)[0].order_id
    shortage = "only 1 of cups available, 4 wanted"
    outcome.then(
        outcome.recorded(OrderPlaced)[0],
        StockReserved(order_id=order, sku="tea", quantity=2),
        StockRejected(order_id=order, sku="cups", quantity=4, reason=shortage),
        StockReleased(order_id=order, sku="tea", quantity=2),
        OrderRejected(order_id=order, customer_id="ann", reason=shortage),
        sent=[
            ReserveStock(order_id=order, sku="tea", quantity=2),
            ReserveStock(order_id=order, sku="cups", quantity=4),
            ReleaseStock(order_id=order, sku="tea"),
            RejectOrder(order_id=order, reason=shortage),
        ],
    )
    summary = (await kit.when(GetOrder(order_id=order), caller=ANN)).result
    assert (summary["status"], summary["rejectReason"]) == ("rejected", shortage)


async def test_a_cancelled_order_gives_its_stock_back() -> None:
    cancelled = OrderCancelled(order_id="o-1", customer_id="ann", items=LINES[:1])
    await (
        shop()
        .given(
            Stock,
            "tea",
            StockAdded(sku="tea", quantity=10),
            StockReserved(order_id="o-1", sku="tea", quantity=2),
        )
        .when(cancelled)
        .then(
            StockReleased(order_id="o-1", sku="tea", quantity=2),
            sent=[ReleaseStock(order_id="o-1", sku="tea")],
        )
    )
