"""Spans and metrics of messages: consume, handle and reply in a service; request as a client;
publish from the event relay. Attributes follow the OpenTelemetry messaging conventions.

Without an exporter the spans are skipped, except that the caller's trace context is made
current while a message is processed, so that what it sends and appends carries it on.
"""

import functools
import json
import logging
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Any, TypeAlias

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from pipelines import headers as h
from pipelines.errors import ServiceUnavailable, Timeout, status_for
from pipelines.messages import Incoming, Reply
from pipelines.telemetry import propagation, tracing
from pipelines.telemetry.metrics import METRICS
from pipelines.telemetry.scope import WorkScope
from pipelines.topology import EVENTS_EXCHANGE, REPLY_TO

RABBITMQ = {"messaging.system": "rabbitmq"}  # OpenTelemetry messaging conventions
PUBLISH = {**RABBITMQ, "messaging.operation.type": "send", "messaging.operation.name": "publish"}
PROCESS = {**RABBITMQ, "messaging.operation.type": "process", "messaging.operation.name": "process"}
log = logging.getLogger("banyan.messages")
SpanScope: TypeAlias = AbstractContextManager[trace.Span | None]  # no span without an exporter


class Consumption:
    """One delivery being processed, and how it ended as the dispatcher reports it."""

    __slots__ = ("_of", "_scope", "_started", "cache", "code")

    def __init__(self, of: "MessageTelemetry", incoming: Incoming) -> None:
        self._of = of
        self._scope = WorkScope(
            of.service,
            incoming.correlation_id,
            incoming.headers,
            f"process {of.queue}",
            SpanKind.CONSUMER,
            lambda: of.consume_attributes(incoming),
        )
        self.code: str | None = None  # the error code it was answered with
        self.cache: str | None = None

    def answered(self, reply: Reply) -> None:
        self.cache = reply.cache
        if not reply.ok:
            self.code = str(json.loads(reply.body).get("error", {}).get("code", "INTERNAL_ERROR"))

    def __enter__(self) -> "Consumption":
        self._scope.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None and self.code is None:
            self.code = "UNHANDLED"
        self._of.record(self, time.perf_counter() - self._started, self._scope.span)
        self._scope.__exit__(kind, exc, tb)


class MessageTelemetry:
    """What a processor records for each message of one queue."""

    def __init__(self, service: str, queue: str, message_type: str, kind: str) -> None:
        self.service, self.queue, self.message_type, self.kind = service, queue, message_type, kind
        self._seconds = METRICS.handler_seconds.labels(service, message_type, kind)
        self._cache = {r: METRICS.cache.labels(service, r) for r in ("hit", "miss")}

    def consuming(self, incoming: Incoming) -> Consumption:
        """The consumer span (a child of the sender's), the log context and the metrics."""
        return Consumption(self, incoming)

    def handling(self, attempt: int) -> SpanScope:
        """The span of one attempt: decode, checks, the handler and what it appends."""
        if not tracing.enabled():
            return nullcontext()
        return tracing.tracer(self.service).start_as_current_span(
            f"handle {self.message_type}",
            attributes={"banyan.message.type": self.message_type, "banyan.attempt": attempt},
        )

    def replying(self, incoming: Incoming) -> SpanScope:
        if not (incoming.reply_to and tracing.enabled()):
            return nullcontext()
        return tracing.tracer(self.service).start_as_current_span(
            "publish reply",
            kind=SpanKind.PRODUCER,
            attributes={
                **PUBLISH,
                "messaging.destination.name": REPLY_TO,
                "messaging.destination.temporary": True,
                "messaging.message.conversation_id": incoming.correlation_id,
            },
        )

    def consume_attributes(self, incoming: Incoming) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            **PROCESS,
            "messaging.destination.name": self.queue,
            "messaging.message.conversation_id": incoming.correlation_id,
            "banyan.message.type": self.message_type,
        }
        if incoming.message_id:
            attributes["messaging.message.id"] = incoming.message_id
        if position := incoming.header(h.GLOBAL_POSITION):
            attributes["banyan.event.position"] = int(position)
        return attributes

    def record(self, outcome: Consumption, seconds: float, span: trace.Span) -> None:
        self._seconds.observe(seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s in %.1f ms",
                self.message_type,
                outcome.code or "ok",
                seconds * 1000,
                extra={"messageType": self.message_type, "durationMs": round(seconds * 1000, 2)},
            )
        if outcome.cache is not None:
            self._cache[outcome.cache].inc()
        if outcome.code is None:
            return
        METRICS.handler_errors.labels(
            self.service, self.message_type, self.kind, outcome.code
        ).inc()
        if span.is_recording():
            span.set_attribute("banyan.error.code", outcome.code)
            if status_for(outcome.code) >= 500:
                span.set_status(Status(StatusCode.ERROR, outcome.code))


class Request:
    """A request in flight: the client marks whether its reply was a success."""

    __slots__ = ("ok",)

    def __init__(self) -> None:
        self.ok = True


@contextmanager
def requesting(
    service: str, queue: str, headers: MutableMapping[str, Any], correlation_id: str
) -> Iterator[Request]:
    """The client span of a request over the bus (its context goes into `headers`)."""
    request, outcome = Request(), "error"
    started = time.perf_counter()
    with _client_span(service, queue, correlation_id) as span:
        propagation.inject(headers)
        try:
            yield request
            outcome = "ok" if request.ok else "error"
        except Timeout:
            outcome = "timeout"
            METRICS.rpc_timeouts.labels(service, queue).inc()
            raise
        except ServiceUnavailable:
            outcome = "unavailable"
            raise
        finally:
            _rpc_seconds(service, queue, outcome).observe(time.perf_counter() - started)
            if span is not None:
                span.set_attribute("banyan.outcome", outcome)


@functools.cache  # a handful of destinations per process; labels() costs a lookup and a lock
def _rpc_seconds(service: str, queue: str, outcome: str) -> Any:
    return METRICS.rpc_seconds.labels(service, queue, outcome)


def _client_span(service: str, queue: str, correlation_id: str) -> SpanScope:
    if not tracing.enabled():
        return nullcontext()
    return tracing.tracer(service).start_as_current_span(
        f"publish {queue}",
        kind=SpanKind.CLIENT,
        attributes={
            **PUBLISH,
            "messaging.destination.name": queue,
            "messaging.message.conversation_id": correlation_id,
        },
    )


def relaying(rows: Sequence[Mapping[str, Any]]) -> SpanScope:
    """The relay's publish of a batch of events, linked to the trace that appended each one."""
    if not (rows and tracing.enabled()):
        return nullcontext()
    links = propagation.links(
        ((row["metadata"] or {}).get("traceparent"), _event_attributes(row)) for row in rows
    )
    return tracing.tracer().start_as_current_span(
        f"publish {EVENTS_EXCHANGE}",
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={
            **PUBLISH,
            "messaging.destination.name": EVENTS_EXCHANGE,
            "messaging.batch.message_count": len(rows),
            "banyan.event.position": rows[-1]["position"],
        },
    )


def _event_attributes(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"banyan.event.position": row["position"], "banyan.event.type": row["event_type"]}
