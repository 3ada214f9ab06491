"""Flows: process managers that read like the business rule they carry out.

A flow is started by an event and is one async function of steps. Each step sends a command
to a service and returns its answer; a step names its `undo` and may have a `deadline`:

    @fulfilment.steps
    async def reserve_every_line_then_confirm(order: OrderPlaced, run: Run) -> None:
        await run.all(
            run.send("inventory", ReserveStock(...), step=f"reserve {sku}",
                     undo=ReleaseStock(...), deadline=30)
            for sku, quantity in lines
        )
        await run.send("orders", ConfirmOrder(order_id=order.order_id))

    @fulfilment.on_failure
    async def reject(order: OrderPlaced, run: Run, reason: str) -> None:
        await run.send("orders", RejectOrder(order_id=order.order_id, reason=reason))

If a step is refused or gets no answer by its deadline, the steps before it are undone
(newest first) and `on_failure` runs. Compared with Axon or Wolverine sagas there are no
handlers per reply, association properties or saga classes to keep in step; compared with
Temporal there is no worker, task queue or activity registration: the flow runs inside an
ordinary service, and compensation is declared with the step instead of written by hand.

How it stays correct: every step is journaled (table `flow_steps`) before its message is
sent, under an idempotency key made of the run and the step name, and its answer is recorded
when it comes. After a crash or a wake-up the function is replayed from the top: answered
steps return their recorded answers, an unanswered one is sent again under the same key (the
receiver handles it once); so a step's name (default: its message type) must stay the same while
runs are in flight. A step without an answer is not waited for in memory: the run is
suspended until its retry or its deadline, and an engine in every process hosting the flow
(a background task) claims runs that are due with a lease, so a run whose process died is
resumed by another once the lease runs out. `banyan flows list|show ID` shows runs and steps.

Where flows run: in the service that hosts them, `flows.host(service, flow, ...)`, declared with
`migrations=flows.MIGRATIONS` (tables `flow_runs`, `flow_steps`); scale it out like any service.
The order flow runs in its own service, `examples.fulfilment`. Pacing: `FLOWS_*` settings.
"""

from flows.flow import Flow
from flows.host import MIGRATIONS, Host, host
from flows.run import FlowError, Run, StepFailed

__all__ = ["MIGRATIONS", "Flow", "FlowError", "Host", "Run", "StepFailed", "host"]
