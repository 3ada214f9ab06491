"""The orders service: pure business rules over its contracts."""

import uuid
from decimal import Decimal

from examples.orders.contracts import (
    CancelOrder,
    CancelOrderResult,
    ConfirmOrder,
    GetOrder,
    ListOrders,
    OrderCancelled,
    OrderConfirmed,
    OrderPage,
    OrderPlaced,
    OrderRejected,
    OrderStatusResult,
    OrderSummary,
    PlaceOrder,
    PlaceOrderResult,
    RejectOrder,
)
from examples.orders.domain import Order
from examples.orders.summary import order_summary
from pipelines import Conflict, Context, NotFound, Service
from pipelines.querycache import Cached

ADMIN = "orders:admin"  # sees and acts on every customer's orders

service = Service(
    "orders", version="1.0.0", description="Places, confirms, rejects, cancels and lists orders"
)
service.projection(order_summary)
service.publishes(OrderPlaced, OrderConfirmed, OrderRejected, OrderCancelled)


@service.command(PlaceOrder, result=PlaceOrderResult)
async def place_order(command: PlaceOrder, ctx: Context) -> PlaceOrderResult:
    order = ctx.create(Order, str(uuid.uuid4()))
    total = sum((line.unit_price * line.quantity for line in command.items), start=Decimal(0))
    order.record(
        OrderPlaced(
            order_id=order.id,
            customer_id=ctx.acting_for(command.customer_id, admin=ADMIN),
            items=command.items,
            total=total,
        )
    )
    return PlaceOrderResult(order_id=order.id)


async def existing(ctx: Context, order_id: str) -> Order:
    order = await ctx.load(Order, order_id)
    if not order.exists:
        raise NotFound(f"order {order_id} does not exist")
    return order


async def placed(ctx: Context, order_id: str, outcome: str) -> Order:
    """The order, if it is still waiting to be confirmed or rejected."""
    order = await existing(ctx, order_id)
    if order.status != "placed":
        raise Conflict(f"order {order_id} is {order.status}; only a placed order can be {outcome}")
    return order


@service.command(ConfirmOrder, result=OrderStatusResult)
async def confirm_order(command: ConfirmOrder, ctx: Context) -> OrderStatusResult:
    order = await placed(ctx, command.order_id, "confirmed")
    order.record(OrderConfirmed(order_id=order.id, customer_id=order.customer_id))
    return OrderStatusResult(order_id=order.id, status=order.status)


@service.command(RejectOrder, result=OrderStatusResult)
async def reject_order(command: RejectOrder, ctx: Context) -> OrderStatusResult:
    order = await placed(ctx, command.order_id, "rejected")
    order.record(
        OrderRejected(order_id=order.id, customer_id=order.customer_id, reason=command.reason)
    )
    return OrderStatusResult(order_id=order.id, status=order.status)


async def own_order_or_admin(command: CancelOrder, ctx: Context) -> bool:
    """Only the customer who placed the order, or a holder of orders:admin, may cancel it."""
    order = await ctx.load(Order, command.order_id)
    return not order.exists or ctx.owns(order.customer_id, admin=ADMIN)  # absent: NOT_FOUND


@service.command(CancelOrder, policies=[own_order_or_admin], result=CancelOrderResult)
async def cancel_order(command: CancelOrder, ctx: Context) -> CancelOrderResult:
    order = await existing(ctx, command.order_id)
    if order.status in ("cancelled", "rejected"):
        raise Conflict(f"order {command.order_id} is already {order.status}")
    order.record(
        OrderCancelled(
            order_id=order.id,
            customer_id=order.customer_id,
            reason=command.reason,
            items=order.items,
        )
    )
    return CancelOrderResult(order_id=order.id, status=order.status)


@service.query(
    GetOrder, result=OrderSummary, reads=order_summary, cache=Cached(ttl=300, key="order_id")
)
async def get_order(query: GetOrder, ctx: Context) -> OrderSummary:
    doc = await order_summary.documents(ctx).get(query.order_id)
    if doc is None or not ctx.owns(doc["customerId"], admin=ADMIN):  # never say it exists
        raise NotFound(f"order {query.order_id} does not exist")
    return OrderSummary.model_validate(doc)


@service.query(ListOrders, result=OrderPage, reads=order_summary, cache=Cached(ttl=60))
async def list_orders(query: ListOrders, ctx: Context) -> OrderPage:
    docs, total = await order_summary.documents(ctx).find(
        {"customerId": ctx.owner_filter(query.customer_id, admin=ADMIN), "status": query.status},
        order_by="placedAt",
        descending=True,
        offset=(query.page - 1) * query.page_size,
        limit=query.page_size,
    )
    return OrderPage(
        items=[OrderSummary.model_validate(d) for d in docs],
        page=query.page,
        page_size=query.page_size,
        total=total,
    )
