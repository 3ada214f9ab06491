"""What the current message or request is about: its service, correlation id and user.

Set per message by the dispatcher and per request by the gateway; read by every log line and
by the span helpers (which pick the tracer of the current service).
"""

import contextvars

from opentelemetry import trace

service: contextvars.ContextVar[str | None] = contextvars.ContextVar("banyan_service", default=None)
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "banyan_correlation_id", default=None
)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("banyan_user_id", default=None)
process_service = "banyan"  # the name of this process, for lines outside any message


def set_correlation(value: str) -> None:
    correlation_id.set(value)


def set_user(value: str | None) -> None:
    user_id.set(value)


def current_service() -> str:
    return service.get() or process_service


def in_service(name: str) -> contextvars.Context:
    """A copy of the current context naming `name` as the service (for its background tasks)."""
    ctx = contextvars.copy_context()
    ctx.run(service.set, name)
    return ctx


def current_ids() -> tuple[str | None, str | None]:
    """The trace and span ids of the active span, as hex (None outside any trace)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to keep with what it produces."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    flags = int(span_context.trace_flags)
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}"
