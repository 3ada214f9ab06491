"""The work on one message or request: its log context, and its span as a child of the caller's.

Without an exporter there is no span: the caller's trace context alone is made current, so that
what the work sends and appends carries it on and its log lines name it. A class rather than a
generator: it runs for every message.
"""

from collections.abc import Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from pipelines.headers import TRACEPARENT
from pipelines.telemetry import context, propagation, tracing

Attributes = Callable[[], dict[str, Any]]


class WorkScope:
    __slots__ = ("_attributes", "_correlation", "_headers", "_kind", "_name", "_parent",
                 "_service", "_span_scope", "_tokens", "span")  # fmt: skip

    def __init__(
        self,
        service: str,
        correlation: str | None,
        headers: Mapping[str, Any],
        name: str,
        kind: trace.SpanKind,
        attributes: Attributes,
    ) -> None:
        self._service, self._correlation, self._headers = service, correlation, headers
        self._name, self._kind, self._attributes = name, kind, attributes
        self._span_scope: Any = None
        self._parent: Token[otel_context.Context] | None = None
        self.span: trace.Span = trace.INVALID_SPAN

    def __enter__(self) -> trace.Span:
        self._tokens: tuple[Token[str | None], ...] = (
            context.service.set(self._service),
            context.correlation_id.set(self._correlation),
            context.user_id.set(None),
        )
        parent = propagation.extract(self._headers) if TRACEPARENT in self._headers else None
        if tracing.enabled():
            self._span_scope = tracing.tracer(self._service).start_as_current_span(
                self._name,
                context=parent or otel_context.Context(),  # no caller: a trace of its own
                kind=self._kind,
                attributes=self._attributes(),
            )
            self.span = self._span_scope.__enter__()
        elif parent is not None:
            self._parent = otel_context.attach(parent)
        return self.span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._span_scope is not None:
            self._span_scope.__exit__(kind, exc, tb)
        elif self._parent is not None:
            otel_context.detach(self._parent)
        service, correlation, user = self._tokens
        context.user_id.reset(user)
        context.correlation_id.reset(correlation)
        context.service.reset(service)
