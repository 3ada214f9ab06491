"""Fan-out of bus events to the gateway's live subscribers (GraphQL subscriptions and `/ws`).

A subscription names one event type and optional equality filters on top-level data fields.
Subscribing checks that the caller is in the event's audience (`gateway.audience`, which
also narrows a subscription to its caller's own events under an owner rule), and binds the
event's routing key to this gateway's own queue (`EventFeed`) before it returns, so every
event published afterwards reaches the subscriber. Each delivery follows the contract as the
registry holds it now: when the registry has changed it, the event type's subscriptions are
admitted again first, and those it refuses end with the reason (`Fanout.under`).

A subscriber that falls `CAPACITY` events behind is dropped with SUBSCRIPTION_OVERFLOW rather
than letting the gateway's memory grow.
"""

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.audience import Admission, admit, check
from gateway.auth import Identity
from gateway.errors import GatewayError
from gateway.fanout import EventRoute, Fanout
from gateway.state import GatewayState
from pipelines import headers as h
from pipelines.identity import Caller
from pipelines.messages import schema_version
from pipelines.registry import ContractInfo
from pipelines.topology import event_routing_key

CAPACITY = 1000
SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as subscribers receive it."""

    event_type: str
    data: dict[str, Any]
    position: int | None
    event_id: str | None
    occurred_at: str | None
    correlation_id: str | None
    schema_version: int = 1  # of the class that wrote `data` (the gateway cannot upcast)

    @classmethod
    def of(cls, event_type: str, data: dict[str, Any], headers: Mapping[str, Any]) -> "Delivery":
        position = _text(headers.get(h.GLOBAL_POSITION))
        return cls(
            event_type,
            data,
            int(position) if position and position.isdigit() else None,
            _text(headers.get(h.EVENT_ID)),
            _text(headers.get(h.OCCURRED_AT)),
            _text(headers.get(h.CORRELATION_ID)),
            schema_version(headers.get(h.SCHEMA_VERSION)) or 1,
        )

    def envelope(self) -> dict[str, Any]:
        return {
            "eventType": self.event_type,
            "eventId": self.event_id,
            "position": self.position,
            "occurredAt": self.occurred_at,
            "correlationId": self.correlation_id,
            "schemaVersion": self.schema_version,
            "data": self.data,
        }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class Subscription:
    """An async iterator of the matching deliveries of one event type."""

    def __init__(
        self, hub: "EventHub", event_type: str, caller: Caller | None, requested: dict[str, Any]
    ) -> None:
        self.hub = hub
        self.event_type = event_type
        self.caller = caller
        self.requested = requested  # the client's filters
        self.admission = Admission(requested)
        self.closed = False
        self.failure: GatewayError | None = None
        self._queue: asyncio.Queue[Delivery | None] = asyncio.Queue(CAPACITY)
        self._tests: tuple[tuple[str, Any], ...] = tuple(requested.items())

    @property
    def filters(self) -> dict[str, Any]:
        """The client's filters and the owner rule's."""
        return self.admission.all_filters()

    def admit(self, route: EventRoute) -> None:
        """Take what `route`'s contract gives the caller; GatewayError if it gives nothing."""
        self.admission = admit(self.caller, *route, self.requested)
        self._tests = tuple(self.admission.filters.items())

    def matches(self, delivery: Delivery) -> bool:
        data = delivery.data
        for name, value in self._tests:  # noqa: SIM110 -- hot path: no generator per event
            if data.get(name) != value:
                return False
        return True

    def offer(self, delivery: Delivery) -> None:
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.fail(
                GatewayError(
                    503,
                    "SUBSCRIPTION_OVERFLOW",
                    f"more than {CAPACITY} {self.event_type} events waited to be sent; "
                    "subscribe again",
                )
            )

    def fail(self, error: GatewayError) -> None:
        """End with `error`, once what was offered before is read."""
        self.failure = error
        self._end()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._end()

    def _end(self) -> None:
        self.hub.remove(self)
        with contextlib.suppress(asyncio.QueueFull):  # full: the reader is not waiting
            self._queue.put_nowait(None)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Delivery:
        if self._queue.empty():
            if self.failure is not None:
                raise self.failure
            if self.closed:
                raise StopAsyncIteration
        delivery = await self._queue.get()
        if delivery is None:
            if self.failure is not None:
                raise self.failure
            raise StopAsyncIteration
        return delivery

    async def aclose(self) -> None:
        self.close()


class EventHub:
    """The subscriptions of one gateway process, fed by its `EventFeed`."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._by_type: dict[str, Fanout] = {}
        state.feed.listeners.append(self.publish)

    async def subscribe(
        self, event_type: str, identity: Identity, filters: Any = None
    ) -> Subscription:
        route = self._route(event_type)
        service, contract = route
        check(identity.caller, service, contract)  # before its fields are looked at
        requested = checked_filters(contract, {} if filters is None else filters)
        subscription = Subscription(self, event_type, identity.caller, requested)
        subscription.admit(route)
        await self.state.feed.bind(event_routing_key(service, event_type))
        self._current(event_type, route).add(subscription)
        return subscription

    def reassign(self, subscription: Subscription, caller: Caller | None) -> None:
        """Carry a subscription on for the new caller of its socket if they may have it, else
        end it with the reason."""
        self.remove(subscription)
        subscription.caller = caller
        try:
            route = self._route(subscription.event_type)
            subscription.admit(route)
        except GatewayError as exc:
            subscription.fail(exc)
            return
        self._current(subscription.event_type, route).add(subscription)

    def _route(self, event_type: str) -> tuple[str, ContractInfo]:
        """(service, contract) of `event_type`, or 404 when no service publishes it."""
        route = self.state.routes.events.get(event_type)
        if route is None:
            raise GatewayError(404, "NOT_FOUND", f"no service publishes {event_type!r}")
        return route

    def remove(self, subscription: Subscription) -> None:
        fanout = self._by_type.get(subscription.event_type)
        if fanout is not None:
            fanout.discard(subscription)

    def count(self) -> int:
        return sum(map(len, self._by_type.values()))

    async def publish(self, event_type: str, data: Any, headers: dict[str, Any]) -> None:
        route = self.state.routes.events.get(event_type)
        if event_type not in self._by_type or route is None or not isinstance(data, dict):
            return
        delivery = Delivery.of(event_type, data, headers)
        for subscription in self._current(event_type, route).recipients(data):
            if subscription.matches(delivery):
                subscription.offer(delivery)

    def _current(self, event_type: str, route: EventRoute) -> Fanout:
        """The event type's subscriptions, admitted under the registry's current contract."""
        fanout = self._by_type.get(event_type)
        if fanout is None:
            fanout = self._by_type[event_type] = Fanout(route)
        elif fanout.route is not route:
            fanout = self._by_type[event_type] = fanout.under(route)
        return fanout


def checked_filters(contract: ContractInfo, filters: Any) -> dict[str, Any]:
    """Equality filters on the event's top-level fields, with scalar values."""
    if not isinstance(filters, dict):
        raise GatewayError(400, "VALIDATION_ERROR", "filters must be an object")
    fields = contract.input_schema.get("properties", {})
    problems = [
        {"field": name, "message": "not a field of the event"}
        for name in filters
        if name not in fields
    ] + [
        {"field": name, "message": "filter values must be strings, numbers, booleans or null"}
        for name, value in filters.items()
        if not isinstance(value, SCALAR)
    ]
    if problems:
        raise GatewayError(
            400, "VALIDATION_ERROR", f"invalid filters for {contract.message_type}", problems
        )
    return dict(filters)
