"""Order fulfilment: reserve the stock of every line, then confirm the order. If a line cannot
be reserved (or inventory does not answer in time), release what was reserved and reject the
order with the reason.

Order release: when an order is cancelled, give back what it holds of each of its SKUs. A
release also refuses a reservation for the order arriving after it, so an order cancelled while
its stock is still being reserved ends with nothing held either: its fulfilment fails to
reserve or to confirm, and undoes its reservations.

Both flows act as the fulfilment service (no `acts_for`): reserving stock and confirming an
order are the platform's work, which no customer holds the permissions for.
"""

from examples.fulfilment.settings import settings
from examples.inventory.contracts import ReleaseStock, Reservation, ReserveStock
from examples.orders.contracts import (
    ConfirmOrder,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    RejectOrder,
)
from flows import Flow, Run

fulfilment = Flow("order-fulfilment", starts_with=OrderPlaced, key=lambda order: order.order_id)
release = Flow("order-release", starts_with=OrderCancelled, key=lambda order: order.order_id)


@fulfilment.steps
async def reserve_every_line_then_confirm(order: OrderPlaced, run: Run) -> None:
    await run.all(
        run.send(
            "inventory",
            ReserveStock(order_id=order.order_id, sku=sku, quantity=quantity),
            step=f"reserve {sku}",
            undo=ReleaseStock(order_id=order.order_id, sku=sku),
            deadline=settings.reserve_within,
            returns=Reservation,
            refusal=shortage,
        )
        for sku, quantity in quantities(order.items).items()
    )
    await run.send("orders", ConfirmOrder(order_id=order.order_id))


@fulfilment.on_failure
async def reject(order: OrderPlaced, run: Run, reason: str) -> None:
    await run.send("orders", RejectOrder(order_id=order.order_id, reason=reason))


@release.steps
async def release_every_line(order: OrderCancelled, run: Run) -> None:
    # No deadline: a release must reach inventory however long it is away.
    await run.all(
        run.send(
            "inventory",
            ReleaseStock(order_id=order.order_id, sku=sku),
            step=f"release {sku}",
        )
        for sku in quantities(order.items)
    )


def quantities(lines: list[OrderLine]) -> dict[str, int]:
    """Units per SKU: two lines of one SKU are one reservation."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    return wanted


def shortage(reservation: Reservation) -> str | None:
    """Why inventory did not reserve (None: it did)."""
    return None if reservation.reserved else reservation.reason or "not reserved"
