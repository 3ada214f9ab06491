"""Declaring a flow: the event that starts it, its steps, and what to do when a step fails."""

import re
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from flows.run import FlowError, Run
from pipelines.contracts import Event, check_contract

E = TypeVar("E", bound=Event)
Steps = Callable[[E, Run], Awaitable[None]]
OnFailure = Callable[[E, Run, str], Awaitable[None]]
NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class Flow(Generic[E]):
    """A process manager: one run per `key` of its starting event.

        fulfilment = Flow("order-fulfilment", starts_with=OrderPlaced, key=lambda o: o.order_id)

        @fulfilment.steps
        async def reserve_then_confirm(order: OrderPlaced, run: Run) -> None:
            await run.send("inventory", ReserveStock(...), undo=ReleaseStock(...), deadline=30)
            await run.send("orders", ConfirmOrder(order_id=order.order_id))

        @fulfilment.on_failure
        async def reject(order: OrderPlaced, run: Run, reason: str) -> None:
            await run.send("orders", RejectOrder(order_id=order.order_id, reason=reason))

    When a step fails, the steps done before it are undone, newest first; then `on_failure`
    runs with the reason.

    `acts_for` names the user a run acts for (say, the order's customer): its steps are sent
    with that user's identity and permissions, except those marked `as_service=True`, sent
    with the hosting service's own. Without it, every step is sent as the service.
    """

    def __init__(
        self,
        name: str,
        *,
        starts_with: type[E],
        key: Callable[[E], str],
        acts_for: Callable[[E], str] | None = None,
    ) -> None:
        if not NAME.match(name):
            raise FlowError(f"flow name {name!r} must match {NAME.pattern}")
        check_contract(starts_with)
        if not issubclass(starts_with, Event):
            raise FlowError(f"{starts_with.__name__} is not an event: a flow starts on an event")
        self.name = name
        self.trigger = starts_with
        self.key = key
        self.acts_for = acts_for
        self.run_steps: Steps[E] | None = None
        self.failure: OnFailure[E] | None = None

    def steps(self, fn: Steps[E]) -> Steps[E]:
        self.run_steps = fn
        return fn

    def on_failure(self, fn: OnFailure[E]) -> OnFailure[E]:
        self.failure = fn
        return fn
