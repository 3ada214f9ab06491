"""The platform's metric families, in one registry per process (`service` is a label).

Prometheus text is served on `/metrics` of every HTTP process; the same registry is shipped to
Elasticsearch by `shipping`.
"""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class PlatformMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, _resident_memory_bytes, _open_fds
        self.loop_lag = Gauge(
            "banyan_event_loop_lag_seconds",
            "How late the event loop ran a timer: time it spent on work that did not yield",
            registry=r,
        )
        self.handler_seconds = Histogram(
            "banyan_handler_seconds",
            "Messages handled, and how long each took, by service and message type",
            ["service", "message_type", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.handler_errors = Counter(
            "banyan_handler_errors_total",
            "Messages answered with an error or dead-lettered, by error code",
            ["service", "message_type", "kind", "code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "banyan_rpc_seconds",
            "Requests over the bus and the wait for their reply, by outcome",
            ["service", "destination", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_timeouts = Counter(
            "banyan_rpc_timeouts_total",
            "Requests that got no reply in time",
            ["service", "destination"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "banyan_queue_depth", "Messages ready in a queue", ["service", "queue"], registry=r
        )
        self.dead_letters = Gauge(
            "banyan_dead_letter_depth",
            "Messages parked in a dead-letter queue",
            ["service", "queue"],
            registry=r,
        )
        self.oldest_append = Gauge(
            "banyan_log_oldest_append_seconds",
            "Seconds the oldest append still in flight has run: every log reader waits for it",
            ["service"],
            registry=r,
        )
        self.projection_lag = Gauge(
            "banyan_projection_lag_events",
            "Events in the log that a projection has not applied yet",
            ["service", "projection"],
            registry=r,
        )
        self.projection_lag_seconds = Gauge(
            "banyan_projection_lag_seconds",
            "Age of the oldest event in the log that a projection has not applied yet",
            ["service", "projection"],
            registry=r,
        )
        self.relay_lag = Gauge(
            "banyan_relay_lag_events",
            "Events in the log that the relay (where it leads) has not published yet",
            ["service"],
            registry=r,
        )
        self.relay_lag_seconds = Gauge(
            "banyan_relay_lag_seconds",
            "Age of the oldest event in the log that the relay has not published yet",
            ["service"],
            registry=r,
        )
        self.flows_past_deadline = Gauge(
            "banyan_flows_past_deadline",
            "Flow runs waiting on a step whose deadline has passed: no engine drives them",
            ["service"],
            registry=r,
        )
        self.projection_events = Counter(
            "banyan_projection_events_total",
            "Events applied to a projection",
            ["service", "projection"],
            registry=r,
        )
        self.cache = Counter(
            "banyan_query_cache_total",
            "Cached queries answered by a service, by hit or miss",
            ["service", "result"],
            registry=r,
        )
        self.events_appended = Counter(
            "banyan_events_appended_total",
            "Events appended to the log",
            ["service", "event_type"],
            registry=r,
        )
        self.forged_events = Counter(
            "banyan_forged_events_total",
            "Events refused because the event log's relay did not sign them as they came, by "
            "receiving process and reason (unsigned, bad_signature, misrouted)",
            ["service", "reason"],
            registry=r,
        )
        self.shipping_dropped = Counter(
            "banyan_metrics_dropped_total",
            "Metric documents dropped because Elasticsearch could not take them",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = PlatformMetrics()
