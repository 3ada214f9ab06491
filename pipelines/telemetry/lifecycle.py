"""Turning telemetry on for a process, from its settings; each part at most once."""

from pipelines import logs
from pipelines.settings import Settings
from pipelines.telemetry import shipping, tracing


def start(service: str, settings: Settings) -> None:
    """Logs, then traces to `JAEGER_ENDPOINT` and metrics to `ELASTICSEARCH_URL` if set."""
    logs.configure_logging(service, settings.log_level)
    if settings.jaeger_endpoint:
        tracing.configure(settings.jaeger_endpoint)
    if settings.elasticsearch_url:
        shipping.start(settings)


def shutdown() -> None:
    """Export what is pending and stop exporting (tests; processes do it at exit)."""
    shipping.stop()
    tracing.shutdown()
