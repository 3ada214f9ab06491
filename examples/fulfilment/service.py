"""The fulfilment service: hosts the order fulfilment and release flows (see order_flow.py).

It owns no aggregates: its state is the flows' runs and steps. Run as many instances as
needed; each drives the runs it claims, and takes over those of an instance that died.
"""

import flows
from examples.fulfilment.order_flow import fulfilment, release
from examples.inventory.contracts import ReleaseStock, ReserveStock
from examples.orders.contracts import ConfirmOrder, RejectOrder
from pipelines import Service

service = Service(
    "fulfilment",
    version="1.0.0",
    description="Reserves stock for placed orders, confirms or rejects them, and releases the "
    "stock of cancelled orders",
    migrations=flows.MIGRATIONS,
    # its identity on the bus holds inventory:reserve, orders:confirm and orders:reject only
    calls=[ReserveStock, ReleaseStock, ConfirmOrder, RejectOrder],
)
flows.host(service, fulfilment, release)
