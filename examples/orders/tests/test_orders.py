"""The orders service's rules, in memory: no RabbitMQ, PostgreSQL or Redis needed."""

from decimal import Decimal

from examples.orders import service
from examples.orders.contracts import (
    CancelOrder,
    GetOrder,
    ListOrders,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    PlaceOrder,
    PlaceOrderResult,
)
from examples.orders.domain import Order
from pipelines import ConcurrencyError, Conflict, Forbidden, NotFound, PolicyViolation
from pipelines.testing import TestKit, admin, anonymous, expired, user

LINES = [OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.50"))]
PLACED = OrderPlaced(order_id="o-1", customer_id="ann", items=LINES, total=Decimal("7.00"))
ANN = user("ann", "orders:place", "orders:cancel", "orders:read")


async def test_an_order_is_placed_for_its_caller() -> None:
    outcome = await TestKit(service).when(PlaceOrder(items=LINES), caller=ANN)
    [placed] = outcome.recorded(OrderPlaced)
    outcome.then(
        placed.model_copy(update={"customer_id": "ann", "total": Decimal("7.00")}),
        result=PlaceOrderResult(order_id=placed.order_id),
    )


async def test_only_an_admin_places_an_order_for_someone_else() -> None:
    kit = TestKit(service)
    await kit.when(PlaceOrder(customer_id="bob", items=LINES), caller=ANN).then(Forbidden)
    outcome = await kit.when(PlaceOrder(customer_id="bob", items=LINES), caller=admin())
    assert [e.customer_id for e in outcome.recorded(OrderPlaced)] == ["bob"]


async def test_the_policy_refuses_a_cancel_by_another_customer() -> None:
    bob = user("bob", "orders:cancel")
    await (
        TestKit(service)
        .given(Order, "o-1", PLACED)
        .when(CancelOrder(order_id="o-1"), caller=bob)
        .then(PolicyViolation)
    )


async def test_a_caller_without_the_permission_or_a_valid_token_is_refused() -> None:
    kit = TestKit(service).given(Order, "o-1", PLACED)
    await kit.when(CancelOrder(order_id="o-1"), caller=anonymous).then("INSUFFICIENT_PERMISSIONS")
    await kit.when(CancelOrder(order_id="o-1"), caller=user("ann")).then(Forbidden)
    outcome = await kit.when(CancelOrder(order_id="o-1"), caller=expired(ANN))
    assert outcome.error is not None and (outcome.error.status, outcome.error.code) == (
        401,
        "TOKEN_EXPIRED",
    )


async def test_the_customer_cancels_once() -> None:
    kit = TestKit(service).given(Order, "o-1", PLACED)
    cancelled = OrderCancelled(order_id="o-1", customer_id="ann", reason="late", items=LINES)
    await kit.when(CancelOrder(order_id="o-1", reason="late"), caller=ANN).then(cancelled)
    await kit.when(CancelOrder(order_id="o-1"), caller=ANN).then(Conflict)


async def test_a_cancel_that_lost_a_race_is_decided_again_on_fresh_state() -> None:
    """Another cancel is appended between this one's read and its append: the version clash
    makes the platform run the handler again, which now sees a cancelled order."""
    first = OrderCancelled(order_id="o-1", customer_id="ann", reason="first", items=LINES)
    outcome = await (
        TestKit(service)
        .given(Order, "o-1", PLACED)
        .meanwhile(Order, "o-1", first)
        .when(CancelOrder(order_id="o-1", reason="second"), caller=ANN)
        .then(Conflict)
    )
    assert outcome.error is not None and "already cancelled" in outcome.error.message


async def test_without_retries_the_clash_is_a_concurrency_error() -> None:
    from pipelines import Settings

    kit = TestKit(service, settings=Settings(concurrency_retries=0))
    first = OrderCancelled(order_id="o-1", customer_id="ann", items=LINES)
    await (
        kit.given(Order, "o-1", PLACED)
        .meanwhile(Order, "o-1", first)
        .when(CancelOrder(order_id="o-1"), caller=ANN)
        .then(ConcurrencyError)
    )


async def test_the_summary_folds_an_order_and_its_cancellation() -> None:
    kit = TestKit(service)
    placed = (await kit.when(PlaceOrder(items=LINES), caller=ANN)).recorded(OrderPlaced)[0]
    await kit.when(CancelOrder(order_id=placed.order_id, reason="late"), caller=ANN)
    summary = (await kit.when(GetOrder(order_id=placed.order_id), caller=ANN)).result
    assert (summary["status"], summary["cancelReason"], summary["total"]) == (
        "cancelled",
        "late",
        "7.00",
    )
    bob = user("bob", "orders:read", "orders:place")
    await kit.when(GetOrder(order_id=placed.order_id), caller=bob).then(NotFound)
    await kit.when(PlaceOrder(items=LINES), caller=bob)
    mine = (await kit.when(ListOrders(), caller=ANN)).result
    assert [o["orderId"] for o in mine["items"]] == [placed.order_id] and mine["total"] == 1
    everyone = (await kit.when(ListOrders(), caller=admin())).result
    assert everyone["total"] == 2
