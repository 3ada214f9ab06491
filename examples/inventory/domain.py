"""The stock of one SKU: its state is a fold of its own events."""

from pydantic import Field

from examples.inventory.contracts import StockAdded, StockRejected, StockReleased, StockReserved
from pipelines import Aggregate, applies


class Stock(Aggregate):
    available: int = 0
    reservations: dict[str, int] = Field(default_factory=dict)  # order id -> units held
    released: set[str] = Field(default_factory=set)  # orders that may not reserve again

    @property
    def reserved(self) -> int:
        return sum(self.reservations.values())

    @applies(StockAdded)
    def _added(self, event: StockAdded) -> None:
        self.available += event.quantity

    @applies(StockReserved)
    def _reserved(self, event: StockReserved) -> None:
        self.available -= event.quantity
        self.reservations[event.order_id] = event.quantity

    @applies(StockRejected)
    def _rejected(self, event: StockRejected) -> None:
        pass  # an answer, not a change: recorded so the refusal is in the log

    @applies(StockReleased)
    def _released(self, event: StockReleased) -> None:
        self.available += self.reservations.pop(event.order_id, 0)
        self.released.add(event.order_id)
