"""The inventory service: stock per SKU, reserved and released per order, never oversold.

Reserving and releasing are idempotent per (order, SKU). Two reservations racing for the last
units append to the same SKU stream: optimistic concurrency lets one win, the other is decided
again on fresh state.
"""

from examples.inventory.contracts import (
    AddStock,
    GetStock,
    Release,
    ReleaseStock,
    Reservation,
    ReserveStock,
    StockAdded,
    StockLevel,
    StockRejected,
    StockReleased,
    StockReserved,
    StockView,
)
from examples.inventory.domain import Stock
from pipelines import Context, NotFound, Service

service = Service("inventory", version="1.0.0", description="Stock per SKU, reserved per order")
service.publishes(StockAdded, StockReserved, StockRejected, StockReleased)


async def existing(ctx: Context, sku: str) -> Stock:
    stock = await ctx.load(Stock, sku)
    if not stock.exists:
        raise NotFound(f"there is no stock of {sku}")
    return stock


@service.command(AddStock, result=StockLevel)
async def add_stock(command: AddStock, ctx: Context) -> StockLevel:
    stock = await ctx.load(Stock, command.sku)
    stock.record(StockAdded(sku=command.sku, quantity=command.quantity))
    return StockLevel(sku=stock.id, available=stock.available, reserved=stock.reserved)


def refusal(stock: Stock, command: ReserveStock) -> str | None:
    """Why the reservation cannot be made, or None if it can."""
    if command.order_id in stock.released:
        return f"order {command.order_id} already released its hold on {stock.id}"
    if command.quantity > stock.available:
        return f"only {stock.available} of {stock.id} available, {command.quantity} wanted"
    return None


@service.command(ReserveStock, result=Reservation)
async def reserve_stock(command: ReserveStock, ctx: Context) -> Reservation:
    stock = await existing(ctx, command.sku)
    held = stock.reservations.get(command.order_id)
    if held is not None:  # reserved before: the same answer again
        return Reservation(order_id=command.order_id, sku=stock.id, quantity=held, reserved=True)
    answer = Reservation(
        order_id=command.order_id, sku=stock.id, quantity=command.quantity, reserved=True
    )
    reason = refusal(stock, command)
    if reason is None:
        stock.record(
            StockReserved(order_id=command.order_id, sku=stock.id, quantity=answer.quantity)
        )
        return answer
    stock.record(
        StockRejected(
            order_id=command.order_id, sku=stock.id, quantity=command.quantity, reason=reason
        )
    )
    return answer.model_copy(update={"reserved": False, "reason": reason})


@service.command(ReleaseStock, result=Release)
async def release_stock(command: ReleaseStock, ctx: Context) -> Release:
    stock = await existing(ctx, command.sku)
    release = Release(order_id=command.order_id, sku=stock.id, released=0)
    if command.order_id in stock.released:
        return release
    held = stock.reservations.get(command.order_id, 0)
    stock.record(StockReleased(order_id=command.order_id, sku=stock.id, quantity=held))
    return release.model_copy(update={"released": held})


@service.query(GetStock, result=StockView)
async def get_stock(query: GetStock, ctx: Context) -> StockView:
    stock = await existing(ctx, query.sku)
    return StockView(
        sku=stock.id,
        available=stock.available,
        reserved=stock.reserved,
        reservations=dict(stock.reservations),
    )
