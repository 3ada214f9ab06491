"""The order aggregate: its state is a fold of its own events."""

from typing import Literal

from pydantic import Field

from examples.orders.contracts import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderRejected,
)
from pipelines import Aggregate, applies


class Order(Aggregate):
    customer_id: str = ""
    status: Literal["new", "placed", "confirmed", "rejected", "cancelled"] = "new"
    items: list[OrderLine] = Field(default_factory=list)

    @applies(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.customer_id = event.customer_id
        self.status = "placed"
        self.items = event.items

    @applies(OrderConfirmed)
    def _confirmed(self, event: OrderConfirmed) -> None:
        self.status = "confirmed"

    @applies(OrderRejected)
    def _rejected(self, event: OrderRejected) -> None:
        self.status = "rejected"

    @applies(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = "cancelled"
