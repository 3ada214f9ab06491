"""HTTP processes: a server span and the log context per request, and `/metrics`."""

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.logs import redact_urls
from pipelines.settings import Settings
from pipelines.telemetry import lifecycle, shipping
from pipelines.telemetry.metrics import METRICS
from pipelines.telemetry.scope import WorkScope

access_log = logging.getLogger("banyan.access")
UNTRACED = frozenset({"/health", "/ready", "/metrics"})  # probes would drown the traces
PROMETHEUS_TEXT = "text/plain; version=0.0.4"
# methods a label or span name may carry: any other is `other` (metrics) or `_OTHER` (spans),
# so that made-up methods cannot make new series
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def method_label(method: str) -> str:
    """`method` if it is a known HTTP method, else `other`: a metric label from a closed set."""
    return method if method in HTTP_METHODS else "other"


class TracingMiddleware:
    """The SERVER span of each request, a child of the caller's `traceparent` if valid, and
    its access line (`banyan.access`: method, path with tokens redacted, status, duration)."""

    def __init__(self, app: ASGIApp, service: str, access_log: bool = True) -> None:
        self.app = app
        self.service = service
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = span_method(scope["method"])
        with WorkScope(
            self.service,
            headers.get("x-correlation-id"),
            headers,
            method,
            SpanKind.SERVER,
            lambda: request_attributes(scope, headers),
        ) as span:
            logged = self.access_log and access_log.isEnabledFor(logging.INFO)
            if not (span.is_recording() or logged):
                await self.app(scope, receive, send)
                return
            started, status, correlation = time.perf_counter(), 0, None

            async def send_traced(message: Message) -> None:
                nonlocal status, correlation
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    correlation = _correlation_id(message)
                    if span.is_recording():
                        record_response(span, status, correlation)
                await send(message)

            await self.app(scope, receive, send_traced)
            route = getattr(scope.get("route"), "path", None)
            if route and span.is_recording():
                name_span(span, method, route)
            if logged:
                access_line(scope, status, time.perf_counter() - started, correlation)


def name_span(span: trace.Span, method: str, route: str) -> None:
    """Name a request's span after its route, unless the app named it (GraphQL)."""
    if getattr(span, "name", method) == method:
        span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)


def span_method(method: str) -> str:
    """What a request's span is named after before its route is known."""
    return method if method in HTTP_METHODS else "HTTP"


def access_line(scope: Scope, status: int, seconds: float, correlation: str | None) -> None:
    path = scope["path"]
    if query := scope.get("query_string"):
        path = redact_urls(f"{path}?{query.decode('latin-1')}")
    millis = round(seconds * 1000, 2)
    extra = {"method": scope["method"], "path": path, "status": status, "durationMs": millis}
    if correlation is not None:
        extra["correlationId"] = correlation
    access_log.info("%s %s %d in %.1f ms", scope["method"], path, status, millis, extra=extra)


def _correlation_id(message: Message) -> str | None:
    for key, value in message.get("headers", []):
        if key.lower() == b"x-correlation-id":
            return str(value.decode("latin-1"))
    return None


def request_attributes(scope: Scope, headers: dict[str, str]) -> dict[str, Any]:
    method = scope["method"]
    attributes: dict[str, Any] = {
        "http.request.method": method if method in HTTP_METHODS else "_OTHER",
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if server := scope.get("server"):
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    if method not in HTTP_METHODS:
        attributes["http.request.method_original"] = method[:32]
    if client := scope.get("client"):
        attributes["client.address"] = client[0]
    if agent := headers.get("user-agent"):
        attributes["user_agent.original"] = agent
    return attributes


def record_response(span: trace.Span, status: int, correlation: str | None) -> None:
    span.set_attribute("http.response.status_code", status)
    if correlation is not None:
        span.set_attribute("banyan.correlation_id", correlation)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def instrument(
    app: FastAPI,
    service: str,
    settings: Settings,
    registry: CollectorRegistry | None = None,
    refresh: Callable[[], object] | None = None,
) -> None:
    """Trace every request of `app`, and ship `registry` (the app's own metrics) with ours."""
    lifecycle.start(service, settings)
    app.add_middleware(TracingMiddleware, service=service, access_log=settings.access_log)
    if registry is not None:
        shipping.attach(registry, service, refresh)


def expose_metrics(app: FastAPI) -> None:
    """Serve the platform metrics on `/metrics` unless the app has its own."""
    if any(getattr(r, "path", None) == "/metrics" for r in app.routes):
        return

    async def metrics() -> Response:
        return Response(METRICS.render(), media_type=PROMETHEUS_TEXT)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
