"""The gateway's FastAPI application: middleware, error bodies, health, docs, routes."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway import apidocs, graphql, openapi, websocket
from gateway.conventions import HeadAsGet
from gateway.correlation import Correlate
from gateway.edge import Edge, GatewayApp
from gateway.errors import error_response, platform_error_response
from gateway.finishing import Finishing
from gateway.routes import RouteTable
from gateway.state import GatewayState, RegistrySource
from gateway.subscriptions import EventHub
from pipelines import telemetry
from pipelines.collector import settle_startup_objects
from pipelines.errors import PlatformError
from pipelines.logs import configure_logging
from pipelines.production import refuse_private_key
from pipelines.settings import Settings, get_settings

GZIP_ABOVE_BYTES = 1024  # smaller answers cost more to compress than they save


def create_app(
    settings: Settings | None = None, source: RegistrySource | None = None, *, settle: bool = False
) -> FastAPI:
    """The gateway's app; `settle`: once started, tune the garbage collector for a process of
    its own (`settle_startup_objects`), as `uvicorn gateway:app` does."""
    settings = settings or get_settings()
    refuse_private_key(settings, "gateway")
    if source is None:
        from gateway.registry import from_discovery

        source = from_discovery
    state = GatewayState(settings, source)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("gateway", settings.log_level)
        await state.start()
        if settle:
            await settle_startup_objects()
        try:
            yield
        finally:
            await state.stop()

    app = GatewayApp(
        title="Banyan API gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
        openapi_url=None,
        # the platform traces requests itself (telemetry.instrument): no second server span
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )  # fmt: skip
    app.state.gateway = state
    app.add_middleware(HeadAsGet)
    app.add_middleware(Correlate, metrics=state.metrics, max_body_bytes=settings.max_body_bytes)
    cors = cors_options(settings)
    app.add_middleware(CORSMiddleware, **cors)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_ABOVE_BYTES)
    app.edge = Edge(state, Finishing.of(cors, GZIP_ABOVE_BYTES))  # the same layers, in one step
    telemetry.instrument(app, "gateway", settings, state.metrics.registry, state.breaker_states)
    _add_error_handlers(app)
    _add_platform_routes(app, state)
    hub = EventHub(state)
    graphql.mount(app, state, hub)
    websocket.mount(app, state, hub)
    return app


def cors_options(settings: Settings) -> dict[str, Any]:
    return {
        "allow_origins": [o.strip() for o in settings.cors_origins.split(",")],
        "allow_methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": ["*"],
        "expose_headers": ["X-Correlation-ID", "X-Event-Position", "X-RateLimit-Limit",
                           "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"],
    }  # fmt: skip


def _correlation(request: Request) -> str:
    return getattr(request.state, "correlation_id", "") or uuid.uuid4().hex


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PlatformError)
    async def platform_error(request: Request, exc: PlatformError) -> Response:
        return platform_error_response(exc, _correlation(request))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = "NOT_FOUND" if exc.status_code == 404 else "HTTP_ERROR"
        return error_response(
            exc.status_code,
            code,
            str(exc.detail),
            _correlation(request),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(
            400, "VALIDATION_ERROR", "invalid request", _correlation(request),
            [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()],
        )  # fmt: skip


def _add_platform_routes(app: FastAPI, state: GatewayState) -> None:
    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        failing = state.supervisor.failing()
        status = "degraded" if failing else "ok"
        return {"status": status, "service": "gateway", "failing": failing}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        checks = await state.readiness()
        status = 200 if all(checks.values()) else 503
        return JSONResponse({"ready": status == 200, "checks": checks}, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        state.breaker_states()
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    documented: list[tuple[RouteTable, bytes]] = []  # the current routes' document, once

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document() -> Response:
        if not documented or documented[0][0] is not state.routes:
            body = JSONResponse(openapi.document(state.routes)).body
            documented[:] = [(state.routes, bytes(body))]
        return Response(documented[0][1], media_type="application/json")

    apidocs.mount(app, openapi_url="/openapi.json")
