"""REST: `POST /api/{service}/{command}` and `GET /api/{service}/{query}`.

The gateway's hot path skips FastAPI's exception, routing and request-response layers: they
cost every request and give nothing here (the OpenAPI document comes from the registry,
`gateway.openapi`). It still runs inside the gateway's own layers: tracing, CORS, correlation.
"""

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import idempotency, requests
from gateway.errors import GatewayError, platform_error_response
from gateway.invoke import Call, invoke
from gateway.state import GatewayState
from pipelines.errors import PlatformError

PATH = re.compile(r"/api/([^/]+)/([^/]+)")


class Api:
    """A middleware that answers `/api/{service}/{name}` and passes anything else on."""

    path = "/api/{service}/{name}"  # the route, as the request's span is named after it

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"service": match[1], "name": match[2]}
        scope["route"] = self
        request = Request(scope, receive)
        try:
            response = await call_contract(request)
        except PlatformError as exc:
            response = platform_error_response(exc, request.state.correlation_id)
        idempotency.return_key(request, response)
        await response(scope, receive, send)


async def call_contract(request: Request) -> Response:
    service, name = request.path_params["service"], request.path_params["name"]
    state: GatewayState = request.app.state.gateway
    route = state.routes.find(service, name)
    if route is None:
        raise GatewayError(404, "NOT_FOUND", f"{service} has no operation {name!r}")
    if request.method != route.method:
        raise GatewayError(
            405,
            "METHOD_NOT_ALLOWED",
            f"use {route.method} {route.path}",
            headers={"Allow": route.method},
        )
    identity = state.auth.identify(request.headers)
    call = Call(
        route=route,
        payload=await requests.payload(request, route),
        identity=identity,
        correlation_id=request.state.correlation_id,
        min_position=requests.min_position(request),
        idempotency_key=(
            idempotency.command_key(request) if route.contract.kind == "command" else None
        ),
        traceparent=requests.traceparent(request),
        client=request.client.host if request.client else "",
    )
    outcome = await invoke(state, call)
    return Response(outcome.body, outcome.status, outcome.headers, media_type="application/json")
