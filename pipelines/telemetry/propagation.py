"""W3C trace context (`traceparent`, `tracestate`) in message headers and event metadata."""

import random
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """AMQP header values arrive as bytes or text."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode() if isinstance(value, bytes) else str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def extract(headers: Mapping[str, Any]) -> Context:
    """The caller's trace context; an invalid or missing `traceparent` gives a new trace."""
    return _PROPAGATOR.extract(headers, getter=_GETTER)


def inject(headers: MutableMapping[str, Any]) -> None:
    """Write the active span's context into outgoing headers."""
    _PROPAGATOR.inject(headers)


@contextmanager
def continuing(traceparent: str | None) -> Iterator[None]:
    """Within: the caller's trace, unless a span is active already (a request's own span)."""
    if not traceparent or trace.get_current_span().get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def unsampled() -> Iterator[None]:
    """Within: a trace that is not sampled, so that neither this work nor its receivers (under
    the default parent-based sampler) record spans: routine chatter such as heartbeats."""
    quiet = trace.SpanContext(
        random.getrandbits(128), random.getrandbits(64), False, trace.TraceFlags(0)
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(quiet)))
    try:
        yield
    finally:
        otel_context.detach(token)


def span_context(traceparent: str | None) -> trace.SpanContext | None:
    """The remote span a stored `traceparent` names, to link to (None if absent or invalid)."""
    if not traceparent:
        return None
    found = trace.get_current_span(extract({"traceparent": traceparent})).get_span_context()
    return found if found.is_valid else None


def links(items: Iterable[tuple[str | None, dict[str, Any]]], limit: int = 128) -> list[trace.Link]:
    """Links to the traces that produced a batch: (traceparent, link attributes) per item."""
    out: list[trace.Link] = []
    for traceparent, attributes in items:
        found = span_context(traceparent)
        if found is not None:
            out.append(trace.Link(found, attributes))
            if len(out) == limit:
                break
    return out
