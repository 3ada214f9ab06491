"""A second service for the fault drills: `faststream run tests.drill_listener:app`.

It subscribes to every OrderPlaced; the platform records each event it handled in
`processed_events`, which is what the drills compare with the log. Orders of the customer
`POISON` fail until the service runs with `DRILL_LISTENER_FIXED=true` (the "fix").
"""

import os

from examples.orders.contracts import OrderPlaced
from pipelines import Context, Service

POISON = "poison"

service = Service("drills")


@service.on(OrderPlaced)
async def order_noted(event: OrderPlaced, ctx: Context) -> None:
    if event.customer_id == POISON and os.environ.get("DRILL_LISTENER_FIXED") != "true":
        raise RuntimeError(f"cannot handle order {event.order_id} of customer {POISON}")


app = service.app
