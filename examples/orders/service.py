"""The orders service: pure business rules over its contracts."""

import uuid

from examples.orders.contracts import (
    CancelOrder,
    CancelOrderResult,
    GetOrder,
    ListOrders,
    OrderCancelled,
    OrderPage,
    OrderPlaced,
    OrderSummary,
    PlaceOrder,
    PlaceOrderResult,
)
from examples.orders.domain import Order
from examples.orders.summary import order_summary
from pipelines import Conflict, Context, NotFound, Service
from pipelines.querycache import Cached

service = Service("orders", version="1.0.0", description="Places, cancels and lists orders")
service.projection(order_summary)
service.publishes(OrderPlaced, OrderCancelled)


@service.command(PlaceOrder, result=PlaceOrderResult)
async def place_order(command: PlaceOrder, ctx: Context) -> PlaceOrderResult:
    order = ctx.create(Order, str(uuid.uuid4()))
    total = sum((line.unit_price * line.quantity for line in command.items), start=0)
    order.record(
        OrderPlaced(
            order_id=order.id,
            customer_id=command.customer_id,
            items=command.items,
            total=total,
        )
    )
    return PlaceOrderResult(order_id=order.id)


async def own_order_or_admin(command: CancelOrder, ctx: Context) -> bool:
    """Only the customer who placed the order, or a holder of orders:admin, may cancel it."""
    if ctx.caller is not None and ctx.caller.has("orders:admin"):
        return True
    order = await ctx.load(Order, command.order_id)
    if not order.exists:
        return True  # the handler answers NOT_FOUND
    return ctx.caller is not None and ctx.caller.user_id == order.customer_id


@service.command(CancelOrder, policies=[own_order_or_admin], result=CancelOrderResult)
async def cancel_order(command: CancelOrder, ctx: Context) -> CancelOrderResult:
    order = await ctx.load(Order, command.order_id)
    if not order.exists:
        raise NotFound(f"order {command.order_id} does not exist")
    if order.status == "cancelled":
        raise Conflict(f"order {command.order_id} is already cancelled")
    order.record(
        OrderCancelled(
            order_id=order.id,
            customer_id=order.customer_id,
            reason=command.reason,
        )
    )
    return CancelOrderResult(order_id=order.id, status=order.status)


@service.query(GetOrder, result=OrderSummary, reads=order_summary, cache=Cached(ttl=300))
async def get_order(query: GetOrder, ctx: Context) -> OrderSummary:
    doc = await order_summary.documents(ctx).get(query.order_id)
    if doc is None:
        raise NotFound(f"order {query.order_id} does not exist")
    return OrderSummary.model_validate(doc)


@service.query(ListOrders, result=OrderPage, reads=order_summary, cache=Cached(ttl=60))
async def list_orders(query: ListOrders, ctx: Context) -> OrderPage:
    docs, total = await order_summary.documents(ctx).find(
        {"customerId": query.customer_id, "status": query.status},
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
