"""Ships the metric registries to Elasticsearch in batches, from a thread of its own.

Requests never wait for it: handlers only touch in-memory counters, and this thread snapshots
them every `METRICS_INTERVAL` seconds into a bounded buffer that it sends with the bulk API.
While Elasticsearch is slow or down (no connection, a timeout, a 5xx or 429) the buffer keeps
the newest documents and counts the oldest it drops (`banyan_metrics_dropped_total`); they are
sent once it answers again. A batch it refuses for good (any other 4xx: a mapping, a
permission, an index setting) is dropped with one log line, and counted: sending it again
would meet the same answer.
"""

import logging
import os
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from prometheus_client import CollectorRegistry

from pipelines.settings import Settings
from pipelines.telemetry import context
from pipelines.telemetry.documents import Snapshot, index_name, index_template
from pipelines.telemetry.metrics import METRICS

BATCH_SIZE = 500
TRANSIENT = (408, 429)  # 4xx answers that say "later", not "never"
REQUEST_TIMEOUT = 5.0
log = logging.getLogger("banyan.telemetry")
Refresh = Callable[[], object]


class Source:
    """A registry to ship, with what brings its gauges up to date before each snapshot.

    Held weakly: a registry that its owner (a gateway app) dropped is shipped no more.
    """

    def __init__(self, snapshot: Snapshot, refresh: Refresh | None) -> None:
        self._snapshot = weakref.ref(snapshot.registry)
        self.snapshot = snapshot
        self._refresh = _weak(refresh)

    @property
    def alive(self) -> bool:
        return self._snapshot() is not None

    def documents(self, base: dict[str, Any]) -> list[dict[str, Any]]:
        refresh = self._refresh() if self._refresh is not None else None
        if refresh is not None:
            try:
                refresh()
            except RuntimeError as exc:  # it reads state the event loop may be changing
                log.debug("refreshing gauges failed: %r", exc)
        return self.snapshot.documents(base)


class MetricsShipper:
    def __init__(
        self, client: Elasticsearch, prefix: str, interval: float, buffer_size: int
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.interval = interval
        self.buffer: deque[dict[str, Any]] = deque()
        self.buffer_size = buffer_size
        self.sources: list[Source] = []
        self.sent = 0
        self._template_ready = False
        self._failing = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # sources are attached from the event loop's thread
        self._thread = threading.Thread(target=self._run, name="banyan-metrics", daemon=True)

    def attach(self, source: Source) -> None:
        with self._lock:
            self.sources.append(source)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = REQUEST_TIMEOUT) -> None:
        """Ship what is left (waiting at most `timeout`), then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()
        self.tick()

    def tick(self) -> None:
        try:
            self.collect()
            self.send()
        except Exception:  # never let the thread die: the next interval tries again
            log.exception("shipping metrics failed")

    def collect(self) -> None:
        base = {
            "@timestamp": datetime.now(UTC).isoformat(),
            "process": context.process_service,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        with self._lock:
            self.sources = [s for s in self.sources if s.alive]
            sources = list(self.sources)
        for source in sources:
            self.buffer.extend(source.documents(base))
        overflow = len(self.buffer) - self.buffer_size
        if overflow > 0:
            for _ in range(overflow):
                self.buffer.popleft()
            METRICS.shipping_dropped.inc(overflow)

    def send(self) -> None:
        while self.buffer:
            batch = [self.buffer[i] for i in range(min(BATCH_SIZE, len(self.buffer)))]
            try:
                self._ensure_template()
                rejected = self._bulk(batch)
            except ApiError as exc:
                if not refused_for_good(exc):
                    self._outage(exc)
                    return
                log.error(
                    "Elasticsearch refused %d metric documents (%d %s): dropped",
                    len(batch), exc.status_code, exc.error,
                )  # fmt: skip
                rejected = len(batch)
            except Exception as exc:
                self._outage(exc)
                return
            for _ in batch:
                self.buffer.popleft()
            if rejected:
                METRICS.shipping_dropped.inc(rejected)
            self.sent += len(batch) - rejected
            if self._failing:
                self._failing = False
                log.info("Elasticsearch takes metrics again (%d buffered)", len(self.buffer))

    def _bulk(self, batch: list[dict[str, Any]]) -> int:
        """Index a batch; the number of documents Elasticsearch refused."""
        operations: list[dict[str, Any]] = []
        for doc in batch:
            when = datetime.fromisoformat(doc["@timestamp"])
            operations += [{"create": {"_index": index_name(self.prefix, when)}}, doc]
        result = self.client.options(request_timeout=REQUEST_TIMEOUT).bulk(operations=operations)
        if not result.get("errors"):
            return 0
        refused = [i for i in result["items"] if next(iter(i.values())).get("error")]
        log.warning("Elasticsearch refused %d metric documents: %s", len(refused), refused[:1])
        return len(refused)

    def _ensure_template(self) -> None:
        if not self._template_ready:
            client = self.client.options(request_timeout=REQUEST_TIMEOUT)
            client.indices.put_index_template(name=self.prefix, **index_template(self.prefix))
            self._template_ready = True

    def _outage(self, exc: Exception) -> None:
        self._template_ready = False  # a server that comes back may have lost it
        if not self._failing:
            self._failing = True
            log.warning("cannot ship metrics to Elasticsearch (%s); buffering", exc)


def refused_for_good(exc: ApiError) -> bool:
    """A 4xx that sending the same request again would meet again."""
    return 400 <= exc.status_code < 500 and exc.status_code not in TRANSIENT


def _weak(refresh: Refresh | None) -> Callable[[], Refresh | None] | None:
    if refresh is None:
        return None
    if hasattr(refresh, "__self__"):
        return weakref.WeakMethod(refresh)
    return lambda: refresh


_shipper: MetricsShipper | None = None
_pending: list[Source] = [Source(Snapshot(METRICS.registry), None)]


def attach(
    registry: CollectorRegistry, service: str | None = None, refresh: Refresh | None = None
) -> None:
    """Ship `registry` too (its documents default to `service`)."""
    source = Source(Snapshot(registry, service), refresh)
    if _shipper is None:
        _pending.append(source)
    else:
        _shipper.attach(source)


def start(settings: Settings, client: Elasticsearch | None = None) -> MetricsShipper:
    """Start shipping (once per process) to `ELASTICSEARCH_URL`, or through `client`."""
    global _shipper
    if _shipper is None:
        client = client or Elasticsearch(
            settings.elasticsearch_url, request_timeout=REQUEST_TIMEOUT, max_retries=0
        )
        _shipper = MetricsShipper(
            client,
            settings.metrics_index_prefix,
            settings.metrics_interval,
            settings.metrics_buffer_size,
        )
        for source in _pending:
            _shipper.attach(source)
        _shipper.start()
        log.info("shipping metrics to %s", settings.elasticsearch_url or "a custom client")
    return _shipper


def stop() -> None:
    """Ship what is left and stop; sources attached since start stay for a later start."""
    global _shipper
    if _shipper is not None:
        shipper, _shipper = _shipper, None
        _pending[:] = [s for s in shipper.sources if s.alive]
        shipper.stop()
