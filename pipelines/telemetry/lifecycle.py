"""Turning telemetry on for a process, from its settings; each part at most once; and off
again at exit within a bounded time, whatever Elasticsearch or the OTLP endpoint do."""

import atexit
import logging
import threading
import time
from collections.abc import Callable

from pipelines import logs
from pipelines.settings import Settings
from pipelines.stopping import MAX_SHARE, closing_share
from pipelines.telemetry import shipping, storage, tracing

log = logging.getLogger("banyan.telemetry")
_at_exit = False
# seconds a stopping process gives its last metrics and spans (its share of GRACEFUL_TIMEOUT):
# a hung receiver must not hold it longer; what is not out by then is lost, and said so
_flush_timeout = MAX_SHARE


def start(service: str, settings: Settings) -> None:
    """Logs, then traces to `JAEGER_ENDPOINT` and metrics to `ELASTICSEARCH_URL` if set."""
    global _at_exit, _flush_timeout
    logs.configure_logging(service, settings.log_level)
    _flush_timeout = closing_share(settings)
    if settings.jaeger_endpoint:
        tracing.configure(settings.jaeger_endpoint)
        storage.name_database(settings.database_url, settings.database_schema)
    if settings.elasticsearch_url:
        shipping.start(settings)
    if not _at_exit and (settings.jaeger_endpoint or settings.elasticsearch_url):
        atexit.register(shutdown)
        _at_exit = True


def shutdown(timeout: float | None = None) -> None:
    """Export what is pending and stop exporting, waiting at most `timeout` seconds in all
    (default: the process's share of GRACEFUL_TIMEOUT)."""
    timeout = _flush_timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    stoppers = [_in_background(stop) for stop in (shipping.stop, tracing.shutdown)]
    for stopper in stoppers:
        stopper.join(max(0.0, deadline - time.monotonic()))
    if any(stopper.is_alive() for stopper in stoppers):
        log.warning("telemetry not all sent within %g s: a receiver does not answer", timeout)


def _in_background(stop: Callable[[], None]) -> threading.Thread:
    stopper = threading.Thread(target=stop, name=f"banyan-{stop.__module__}-stop", daemon=True)
    stopper.start()
    return stopper
