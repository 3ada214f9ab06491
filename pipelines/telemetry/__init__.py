"""Traces, metrics and log context for every process of the platform.

- `start(service, settings)` turns on what the settings ask for (once per process);
- `instrument(app, ...)` traces an HTTP app; `expose_metrics(app)` serves `/metrics`;
- the span helpers (`MessageTelemetry`, `requesting`, `relaying`, `appending`,
  `applying`) are what the dispatcher, the RPC client, the relay, the event store and the
  projection runner wrap their work in.
"""

from pipelines.telemetry.context import (
    current_traceparent,
    in_service,
    set_correlation,
    set_user,
)
from pipelines.telemetry.http import expose_metrics, instrument
from pipelines.telemetry.lifecycle import shutdown, start
from pipelines.telemetry.messaging import MessageTelemetry, relaying, requesting
from pipelines.telemetry.metrics import METRICS
from pipelines.telemetry.propagation import continuing, unsampled
from pipelines.telemetry.sampling import every_interval, sample_forever, watch_event_loop
from pipelines.telemetry.storage import appending, applying

__all__ = [
    "METRICS",
    "MessageTelemetry",
    "appending",
    "applying",
    "continuing",
    "current_traceparent",
    "every_interval",
    "expose_metrics",
    "in_service",
    "instrument",
    "relaying",
    "requesting",
    "sample_forever",
    "set_correlation",
    "set_user",
    "shutdown",
    "start",
    "unsampled",
    "watch_event_loop",
]
