"""Spans and metrics of the event log: appends (database conventions) and projection batches."""

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind

from pipelines.telemetry import propagation, tracing
from pipelines.telemetry.context import current_service
from pipelines.telemetry.metrics import METRICS

PositionOf = Callable[[int | None], int | None]


# OpenTelemetry database conventions (stable): the system, and `{database}|{schema}` once known
POSTGRESQL: dict[str, str] = {"db.system.name": "postgresql"}


def name_database(database_url: str, schema: str) -> None:
    """Name the database every span of this process talks to (`db.namespace`)."""
    database = urlsplit(database_url.split(",")[0]).path.lstrip("/") or "postgres"
    POSTGRESQL["db.namespace"] = f"{database}|{schema}"


@contextmanager
def appending(statement: str, events: Sequence[Any]) -> Iterator[PositionOf]:
    """An append: a database client span, and events counted by type once it succeeds.

    Pass the position the statement returns through the function it yields.
    """
    if not tracing.enabled():
        yield _same
    else:
        with tracing.tracer().start_as_current_span(
            "INSERT events",
            kind=SpanKind.CLIENT,
            attributes={
                **POSTGRESQL,
                "db.operation.name": "INSERT",
                "db.collection.name": "events",
                "db.query.text": statement,
                "banyan.event.count": len(events),
            },
        ) as span:

            def record(position: int | None) -> int | None:
                if position is not None:
                    span.set_attribute("banyan.event.position", position)
                return position

            yield record
    for event in events:
        _appended(event.metadata.get("service") or current_service(), event.event_type).inc()


def _same(position: int | None) -> int | None:
    return position


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
                **POSTGRESQL,
                "db.operation.name": "apply",
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
