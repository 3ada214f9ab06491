"""What one GraphQL operation carries to its resolvers, and the positions it reports back."""

from dataclasses import dataclass, field
from typing import Any

from ariadne.types import Extension

from gateway.auth import Identity
from gateway.idempotency import new_key
from gateway.state import GatewayState
from gateway.subscriptions import EventHub, Subscription
from pipelines.idempotency import bounded_key


@dataclass
class GraphQLContext:
    state: GatewayState
    hub: EventHub
    identity: Identity
    correlation_id: str
    client: str = ""  # the caller's address: anonymous callers are rate-limited by it
    min_position: int = 0  # X-Min-Position: queries wait for their projection to reach it
    traceparent: str | None = None
    idempotency_key: str | None = None  # the request's Idempotency-Key, or one its mutations got
    positions: list[int] = field(default_factory=list)  # of the events the mutations appended
    subscriptions: list[Subscription] = field(default_factory=list)  # the connection's, to close
    operation_type: str = "unknown"  # query, mutation or subscription, once parsed

    def command_key(self, response_key: str) -> str:
        """The idempotency key of one mutation field: the request's (assigned if it has none),
        told apart per field (by alias or name) so that several mutations in one request stay
        several commands; a digest when that is too long for a message id."""
        self.idempotency_key = self.idempotency_key or new_key()
        return bounded_key(f"{self.idempotency_key}:{response_key}")


class EventPositions(Extension):
    """`extensions: {"eventPosition": N}`: the last position a mutation of the request wrote.

    Send it as `X-Min-Position` with a later query to read your own writes.
    """

    def format(self, context: Any) -> dict[str, Any]:
        positions = getattr(context, "positions", None)
        return {"eventPosition": max(positions)} if positions else {}
