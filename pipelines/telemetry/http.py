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

from pipelines.settings import Settings
from pipelines.telemetry import lifecycle, shipping
from pipelines.telemetry.metrics import METRICS
from pipelines.telemetry.scope import WorkScope

log = logging.getLogger("banyan.http")
UNTRACED = frozenset({"/health", "/ready", "/metrics"})  # probes would drown the traces
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


class TracingMiddleware:
    """The SERVER span of each request, a child of the caller's `traceparent` if valid."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with WorkScope(
            self.service,
            headers.get("x-correlation-id"),
            headers,
            method,
            SpanKind.SERVER,
            lambda: _request_attributes(scope, headers),
        ) as span:
            if not (span.is_recording() or log.isEnabledFor(logging.DEBUG)):
                await self.app(scope, receive, send)
                return
            started, status = time.perf_counter(), 0

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    if span.is_recording():
                        _record_response(span, message)
                await send(message)

            await self.app(scope, receive, send_traced)
            route = getattr(scope.get("route"), "path", None)
            if route and span.is_recording():
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            millis = (time.perf_counter() - started) * 1000
            log.debug(
                "%s %s %d in %.1f ms", method, scope["path"], status, millis,
                extra={"httpStatus": status, "durationMs": round(millis, 2)},
            )  # fmt: skip


def _request_attributes(scope: Scope, headers: dict[str, str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if client := scope.get("client"):
        attributes["client.address"] = client[0]
    if agent := headers.get("user-agent"):
        attributes["user_agent.original"] = agent
    return attributes


def _record_response(span: trace.Span, message: Message) -> None:
    status = int(message["status"])
    span.set_attribute("http.response.status_code", status)
    for key, value in message.get("headers", []):
        if key.lower() == b"x-correlation-id":
            span.set_attribute("banyan.correlation_id", value.decode("latin-1"))
    if status >= 500:
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
    app.add_middleware(TracingMiddleware, service=service)
    if registry is not None:
        shipping.attach(registry, service, refresh)


def expose_metrics(app: FastAPI) -> None:
    """Serve the platform metrics on `/metrics` unless the app has its own."""
    if any(getattr(r, "path", None) == "/metrics" for r in app.routes):
        return

    async def metrics() -> Response:
        return Response(METRICS.render(), media_type=PROMETHEUS_TEXT)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
