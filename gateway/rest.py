"""REST: `POST /api/{service}/{command}` and `GET /api/{service}/{query}`.

A plain Starlette route: FastAPI's dependency machinery would cost every request and give
nothing here (the OpenAPI document comes from the registry, `gateway.openapi`).
"""

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway import requests
from gateway.errors import GatewayError
from gateway.invoke import Call, invoke
from gateway.state import GatewayState


class ContractRoute(Route):
    """Names itself in the scope as FastAPI's routes do: the request's span is named after it."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child


def mount(app: FastAPI) -> None:
    route = ContractRoute(
        "/api/{service}/{name}", call_contract, methods=["GET", "POST"], include_in_schema=False
    )
    app.router.routes.append(route)


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
        payload=await requests.payload(request, route, state.settings.max_body_bytes),
        identity=identity,
        correlation_id=request.state.correlation_id,
        min_position=requests.min_position(request),
        idempotency_key=request.headers.get("idempotency-key"),
        traceparent=requests.traceparent(request),
        client=request.client.host if request.client else "",
    )
    outcome = await invoke(state, call)
    return Response(outcome.body, outcome.status, outcome.headers, media_type="application/json")
