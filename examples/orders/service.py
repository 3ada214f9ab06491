"""The orders service: pure business rules over its contracts."""

import uuid

from examples.orders.contracts import (
    CancelOrder,
    CancelOrderResult,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    PlaceOrderResult,
)
from examples.orders.domain import Order
from pipelines import Conflict, Context, NotFound, Service

service = Service("orders", version="1.0.0", description="Places and cancels orders")


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
