"""Tracer providers: OTLP/HTTP export when an endpoint is configured, a no-op tracer otherwise.

One process may host several services (tests, embedding): each service gets its own provider,
so that its spans carry its own `service.name`, and all of them share one batch exporter.
"""

import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from pipelines.telemetry.context import current_service

INSTRUMENTATION = "banyan"
EXPORT_TIMEOUT = 5.0  # seconds per OTLP request; export runs off the event loop
log = logging.getLogger("banyan.telemetry")

_NOOP = trace.NoOpTracer()
_endpoint: str | None = None
_processor: SpanProcessor | None = None
_tracers: dict[str, trace.Tracer] = {}


def configure(endpoint: str, processor: SpanProcessor | None = None) -> None:
    """Export spans to `endpoint` (an OTLP/HTTP traces URL); a second call is a no-op."""
    global _endpoint, _processor
    if _processor is not None:
        if endpoint != _endpoint:
            log.warning("tracing already exports to %s; ignoring %s", _endpoint, endpoint)
        return
    _endpoint = endpoint
    _processor = processor or BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT), schedule_delay_millis=1000
    )
    log.info("exporting traces to %s", endpoint)


def enabled() -> bool:
    return _processor is not None


def tracer(service: str | None = None) -> trace.Tracer:
    """The tracer of `service` (default: the current one); no-op while tracing is off."""
    if _processor is None:
        return _NOOP
    name = service or current_service()
    found = _tracers.get(name)
    if found is None:
        provider = TracerProvider(
            resource=Resource.create({"service.name": name}), shutdown_on_exit=False
        )
        provider.add_span_processor(_processor)
        found = _tracers[name] = provider.get_tracer(INSTRUMENTATION)
    return found


def flush(timeout_millis: int = 5000) -> bool:
    return _processor.force_flush(timeout_millis) if _processor is not None else True


def shutdown() -> None:
    """Go back to the no-op tracer, then export what is pending (as long as the endpoint
    takes: `lifecycle.shutdown` bounds the wait)."""
    global _endpoint, _processor
    processor, _endpoint, _processor = _processor, None, None
    _tracers.clear()
    if processor is not None:
        processor.shutdown()
