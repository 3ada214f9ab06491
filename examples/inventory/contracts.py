"""The inventory service's public contracts."""

from typing import Annotated

from pydantic import Field

from pipelines import Command, Event, Model, Query

Sku = Annotated[str, Field(min_length=1, max_length=64)]
OrderId = Annotated[str, Field(min_length=1, max_length=128)]
Quantity = Annotated[int, Field(gt=0, le=1_000_000)]


class AddStock(Command, permissions=["inventory:manage"]):
    """Add units of a SKU to the stock (the first addition creates the SKU)."""

    sku: Sku
    quantity: Quantity


class ReserveStock(Command, permissions=["inventory:reserve"]):
    """Hold units of a SKU for an order: once per (order, SKU), never more than is available."""

    order_id: OrderId
    sku: Sku
    quantity: Quantity


class ReleaseStock(Command, permissions=["inventory:reserve"]):
    """Give back what an order holds of a SKU; a reservation arriving after it is refused."""

    order_id: OrderId
    sku: Sku


class GetStock(Query, permissions=["inventory:read"]):
    """A SKU's stock as of its last event: free units, held units and who holds them."""

    sku: Sku


class StockLevel(Model):
    sku: str
    available: int
    reserved: int


class Reservation(Model):
    """The answer to ReserveStock: reserved, or refused with the reason."""

    order_id: str
    sku: str
    quantity: int
    reserved: bool
    reason: str | None = None


class Release(Model):
    order_id: str
    sku: str
    released: int


class StockView(StockLevel):
    reservations: dict[str, int]


class StockAdded(Event, service="inventory", permissions=["inventory:read"]):
    sku: str
    quantity: int


class StockReserved(Event, service="inventory", permissions=["inventory:read"]):
    order_id: str
    sku: str
    quantity: int


class StockRejected(Event, service="inventory", permissions=["inventory:read"]):
    order_id: str
    sku: str
    quantity: int
    reason: str


class StockReleased(Event, service="inventory", permissions=["inventory:read"]):
    """`quantity` 0: the order held nothing, and now never will (a late reservation is refused)."""

    order_id: str
    sku: str
    quantity: int
