"""The order aggregate: its state is a fold of its own events."""

from typing import Literal

from examples.orders.contracts import OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected
from pipelines import Aggregate, applies


class Order(Aggregate):
    customer_id: str = ""
    status: Literal["new", "placed", "confirmed", "rejected", "cancelled"] = "new"

    @applies(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.customer_id = event.customer_id
        self.status = "placed"

    @applies(OrderConfirmed)
    def _confirmed(self, event: OrderConfirmed) -> None:
        self.status = "confirmed"

    @applies(OrderRejected)
    def _rejected(self, event: OrderRejected) -> None:
        self.status = "rejected"

    @applies(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = "cancelled"
