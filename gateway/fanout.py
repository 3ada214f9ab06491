"""The subscriptions of one event type, arranged so that delivering an event is cheap.

Subscriptions under an owner rule are kept by the user they are for: an event reaches the
unrestricted ones and those of the user its owner field names, found by one dictionary
lookup, whatever the number of other users' subscriptions.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from pipelines.registry import ContractInfo

if TYPE_CHECKING:
    from gateway.subscriptions import Subscription

EventRoute = tuple[str, ContractInfo]  # the service publishing an event, and its contract


class Fanout:
    def __init__(self, route: EventRoute) -> None:
        self.route = route  # what every subscription here was admitted under
        audience = route[1].audience
        self.owner = audience.owner if audience else None
        self.unrestricted: set[Subscription] = set()
        self.by_user: dict[str | None, set[Subscription]] = {}

    def __len__(self) -> int:
        return len(self.unrestricted) + sum(map(len, self.by_user.values()))

    def __iter__(self) -> Iterator["Subscription"]:
        yield from self.unrestricted
        for subscriptions in self.by_user.values():
            yield from subscriptions

    def add(self, subscription: "Subscription") -> None:
        """Keep a subscription admitted under this route."""
        if subscription.admission.owner is None:
            self.unrestricted.add(subscription)
        else:
            self.by_user.setdefault(subscription.admission.user_id, set()).add(subscription)

    def discard(self, subscription: "Subscription") -> None:
        self.unrestricted.discard(subscription)
        mine = self.by_user.get(subscription.admission.user_id)
        if mine is not None:
            mine.discard(subscription)
            if not mine:
                del self.by_user[subscription.admission.user_id]

    def recipients(self, data: dict[str, Any]) -> tuple["Subscription", ...]:
        """Who may receive an event with `data` (a copy: delivering may remove some)."""
        owned = self.by_user.get(data.get(self.owner)) if self.owner else None
        return (*self.unrestricted, *owned) if owned else tuple(self.unrestricted)

    def under(self, route: EventRoute) -> "Fanout":
        """These subscriptions admitted again under a changed contract; those it refuses end
        with the reason."""
        fanout = Fanout(route)
        for subscription in list(self):
            try:
                subscription.admit(route)
            except GatewayError as exc:
                subscription.fail(exc)
            else:
                fanout.add(subscription)
        return fanout
