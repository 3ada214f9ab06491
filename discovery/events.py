"""Discovery's events go through the event log, appended in the transaction that changed
the registry: an event exists exactly when its change does, and the relay publishes it to
`exchange.platform.events` as `discovery.{eventname}`."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from discovery.store import Connection, advance_stream
from pipelines.context import Context
from pipelines.contracts import Event
from pipelines.eventstore import EventStore, NewEvent
from pipelines.registry import DISCOVERY

STREAM = "RegisteredService"  # aggregate type: one stream per service name


@dataclass(frozen=True, slots=True)
class Cause:
    """What led to a change: the request's correlation and message ids, if a request did."""

    correlation_id: str
    causation_id: str | None = None

    @classmethod
    def of(cls, ctx: Context) -> "Cause":
        return cls(ctx.correlation_id, ctx.message_id)

    @classmethod
    def monitor(cls) -> "Cause":
        return cls(uuid.uuid4().hex)


async def record(
    conn: Connection, store: EventStore, service: str, events: Sequence[Event], cause: Cause
) -> None:
    """Append `events` to the service's stream, in the transaction of `conn`."""
    if not events:
        return
    first = await advance_stream(conn, service, len(events))
    await store.append(
        [
            NewEvent(
                STREAM,
                service,
                first + i,
                event.message_type(),
                event.model_dump_json(),
                {"service": DISCOVERY},
                schema_version=event.__version__,
            )
            for i, event in enumerate(events)
        ],
        correlation_id=cause.correlation_id,
        causation_id=cause.causation_id,
        conn=conn,
    )
