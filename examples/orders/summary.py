"""The order_summary read model: one document per order."""

from examples.orders.contracts import OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected
from pipelines.eventstore import RecordedEvent
from projections import Documents, Projection

order_summary = Projection(
    "order_summary",
    indexes={"customer": "customerId", "status": "status", "placed": "placedAt"},
)


@order_summary.on(OrderPlaced)
async def placed(event: OrderPlaced, docs: Documents, meta: RecordedEvent) -> None:
    # meta.data is the event in its wire form already: cheaper than dumping the model again
    docs.put(
        event.order_id,
        {**meta.data, "status": "placed", "placedAt": meta.occurred_at.isoformat()},
    )


@order_summary.on(OrderCancelled)
async def cancelled(event: OrderCancelled, docs: Documents, meta: RecordedEvent) -> None:
    docs.patch(
        event.order_id,
        {
            "status": "cancelled",
            "cancelledAt": meta.occurred_at.isoformat(),
            "cancelReason": event.reason,
        },
    )


@order_summary.on(OrderConfirmed)
async def confirmed(event: OrderConfirmed, docs: Documents, meta: RecordedEvent) -> None:
    docs.patch(event.order_id, {"status": "confirmed", "confirmedAt": meta.occurred_at.isoformat()})


@order_summary.on(OrderRejected)
async def rejected(event: OrderRejected, docs: Documents, meta: RecordedEvent) -> None:
    docs.patch(
        event.order_id,
        {
            "status": "rejected",
            "rejectedAt": meta.occurred_at.isoformat(),
            "rejectReason": event.reason,
        },
    )
