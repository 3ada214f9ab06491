"""REST: `POST /api/{service}/{command}` and `GET /api/{service}/{query}`."""

from fastapi import APIRouter, Request, Response

from gateway import requests
from gateway.errors import GatewayError
from gateway.invoke import Call, invoke
from gateway.state import GatewayState

router = APIRouter()


@router.api_route("/api/{service}/{name}", methods=["GET", "POST"], include_in_schema=False)
async def call_contract(service: str, name: str, request: Request) -> Response:
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
