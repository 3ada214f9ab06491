"""The orders service's public contracts."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from pipelines import Command, Event, Model, Query


class OrderLine(Model):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(gt=0, le=10_000)]
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class PlaceOrder(Command, permissions=["orders:place"]):
    """Place an order: the caller's own, or (for a holder of orders:admin) a named customer's."""

    customer_id: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=500)]


class PlaceOrderResult(Model):
    order_id: str


class CancelOrder(Command, permissions=["orders:cancel"]):
    """Cancel an order: only its customer or a holder of orders:admin may."""

    order_id: Annotated[str, Field(min_length=1)]
    reason: str | None = None


class OrderStatusResult(Model):
    order_id: str
    status: str


class CancelOrderResult(OrderStatusResult):
    pass


class ConfirmOrder(Command, permissions=["orders:confirm"]):
    """Confirm a placed order: its stock is reserved (sent by the fulfilment flow)."""

    order_id: Annotated[str, Field(min_length=1)]


class RejectOrder(Command, permissions=["orders:reject"]):
    """Reject a placed order, saying why (sent by the fulfilment flow)."""

    order_id: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


# Order events reach only their customer (holding orders:read) and holders of orders:admin.
class OrderPlaced(
    Event,
    service="orders",
    permissions=["orders:read"],
    owner="customer_id",
    admin="orders:admin",
):
    order_id: str
    customer_id: str
    items: list[OrderLine]
    total: Decimal


class OrderCancelled(
    Event,
    service="orders",
    permissions=["orders:read"],
    owner="customer_id",
    admin="orders:admin",
):
    order_id: str
    customer_id: str
    reason: str | None = None
    # the order's lines, so that the stock reserved for them can be given back (empty in
    # events recorded before cancellations carried them)
    items: list[OrderLine] = Field(default_factory=list)


class OrderConfirmed(
    Event,
    service="orders",
    permissions=["orders:read"],
    owner="customer_id",
    admin="orders:admin",
):
    order_id: str
    customer_id: str


class OrderRejected(
    Event,
    service="orders",
    permissions=["orders:read"],
    owner="customer_id",
    admin="orders:admin",
):
    order_id: str
    customer_id: str
    reason: str


OrderStatus = Literal["placed", "confirmed", "rejected", "cancelled"]


class GetOrder(Query, permissions=["orders:read"]):
    """One of the caller's orders (anyone's for a holder of orders:admin), as order_summary
    shows it; someone else's is NOT_FOUND."""

    order_id: Annotated[str, Field(min_length=1)]


class ListOrders(Query, permissions=["orders:read"]):
    """The caller's orders, newest first, optionally in one status. A holder of orders:admin
    sees everyone's, or one customer's; anyone else naming another customer is refused."""

    customer_id: str | None = None
    status: OrderStatus | None = None
    page: Annotated[int, Field(ge=1)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 20


class OrderSummary(Model):
    order_id: str
    customer_id: str
    status: str
    items: list[OrderLine]
    total: Decimal
    placed_at: str
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    confirmed_at: str | None = None
    rejected_at: str | None = None
    reject_reason: str | None = None


class OrderPage(Model):
    items: list[OrderSummary]
    page: int
    page_size: int
    total: int
