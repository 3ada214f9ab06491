"""Spans and metrics of the event log: appends (database conventions) and projection batches."""

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeAlias, TypeVar

from opentelemetry.trace import SpanKind

from pipelines.telemetry import propagation, tracing
from pipelines.telemetry.context import current_service
from pipelines.telemetry.metrics import METRICS

APPEND_STATEMENT = "SELECT append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
P = ParamSpec("P")
S = TypeVar("S")


Append: TypeAlias = Callable[Concatenate[S, Sequence[Any], P], Awaitable[int | None]]


def traced_append(append: Append[S, P]) -> Append[S, P]:
    """Decorates `EventStore.append`: a database client span, and events counted by type."""

    @functools.wraps(append)
    async def traced(
        store: S, events: Sequence[Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> int | None:
        if not tracing.enabled():
            position = await append(store, events, *args, **kwargs)
        else:
            with tracing.tracer().start_as_current_span(
                "append_events events",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "postgresql",
                    "db.operation": "append_events",
                    "db.sql.table": "events",
                    "db.statement": APPEND_STATEMENT,
                    "banyan.event.count": len(events),
                },
            ) as span:
                position = await append(store, events, *args, **kwargs)
                if position is not None:
                    span.set_attribute("banyan.event.position", position)
        for event in events:
            _appended(event.metadata.get("service") or current_service(), event.event_type).inc()
        return position

    return traced


@functools.cache
def _appended(service: str, event_type: str) -> Any:
    return METRICS.events_appended.labels(service, event_type)


@contextmanager
def applying(projection: str, events: Sequence[Any]) -> Iterator[None]:
    """A projection applying a batch, linked to the trace that appended each of its events."""
    if events and tracing.enabled():
        links = propagation.links(
            (
                e.metadata.get("traceparent"),
                {"banyan.event.position": e.position, "banyan.event.type": e.event_type},
            )
            for e in events
        )
        with tracing.tracer().start_as_current_span(
            f"apply {projection}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "db.system": "postgresql",
                "db.operation": "apply",
                "banyan.projection": projection,
                "banyan.event.count": len(events),
                "banyan.event.position": events[-1].position,
            },
        ):
            yield
    else:
        yield
    if events:
        METRICS.projection_events.labels(current_service(), projection).inc(len(events))
