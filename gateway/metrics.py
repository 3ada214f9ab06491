"""The gateway's Prometheus metrics (one registry per app)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pipelines.telemetry import METRICS
from pipelines.telemetry.http import method_label


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests_total",
            "Requests by protocol, method and status",
            ["protocol", "method", "status"],
            registry=self.registry,
        )
        self.graphql_errors = Counter(
            "gateway_graphql_errors_total",
            "Errors in GraphQL answers (most of them HTTP 200), by operation type and code",
            ["operation", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "Request latency by protocol",
            ["protocol"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.cache = Counter(
            "gateway_cache_total", "Query cache lookups", ["result"], registry=self.registry
        )
        self.redis_unavailable = Counter(
            "gateway_redis_unavailable_total",
            "Requests admitted without rate limit or query cache: Redis failed or was too slow",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total", "Requests refused by rate limits", registry=self.registry
        )
        self.breaker_open = Gauge(
            "gateway_circuit_breaker_open",
            "1 while the service's circuit breaker is open",
            ["service"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gateway_rpc_in_flight", "Requests waiting for a reply", registry=self.registry
        )

        self._http_latency = self.latency.labels("http")
        self._http_answers: dict[tuple[str, int], Counter] = {}  # label children, found once

    def answered(self, method: str, status: int, seconds: float) -> None:
        """Count and time one HTTP request."""
        self._http_latency.observe(seconds)
        key = (method_label(method), status)
        answers = self._http_answers.get(key)
        if answers is None:  # the labels come from closed sets: the dict stays small
            answers = self._http_answers[key] = self.requests.labels("http", key[0], str(status))
        answers.inc()

    def render(self) -> bytes:
        """The gateway's families, then the platform's (its RPC latencies among them)."""
        return generate_latest(self.registry) + METRICS.render()
