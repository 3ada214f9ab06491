"""REST: `POST /api/{service}/{command}` and `GET /api/{service}/{query}`.

A request's answer, errors included, as an `Outcome`: `gateway.edge` receives the request and
sends the answer, in front of FastAPI's layers (they cost every request and give nothing here;
the OpenAPI document comes from the registry, `gateway.openapi`).
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway import idempotency, requests
from gateway.errors import GatewayError, error_body, log_server_error
from gateway.invoke import Call, Outcome, invoke
from gateway.state import GatewayState
from pipelines.errors import PlatformError

PATH = re.compile(r"/api/([^/]+)/([^/]+)")
ROUTE = "/api/{service}/{name}"  # what a request's span is named after


@dataclass(frozen=True, slots=True)
class RestRequest:
    method: str  # HEAD is answered as GET
    service: str
    name: str
    headers: requests.Headers
    query: bytes
    client: str  # the caller's address
    correlation_id: str
    read_body: Callable[[], Awaitable[bytes]]  # its size limited by `bodylimit`


async def answer(state: GatewayState, request: RestRequest) -> Outcome:
    """The contract's answer; a command's carries the Idempotency-Key it was sent with."""
    try:
        call = await _call(state, request)
    except PlatformError as exc:
        return failure(exc, request.correlation_id)
    try:
        outcome = await invoke(state, call)
    except PlatformError as exc:
        outcome = failure(exc, request.correlation_id)
    if call.idempotency_key is not None:
        outcome.headers[idempotency.HEADER] = call.idempotency_key
    return outcome


def failure(exc: PlatformError, correlation_id: str, cause: BaseException | None = None) -> Outcome:
    """The platform's error body for `exc`, with its headers (Allow, Retry-After...)."""
    log_server_error(exc.status, exc.code, exc.message, exc.details, correlation_id, cause)
    body = error_body(exc.code, exc.message, correlation_id, exc.details)
    return Outcome(exc.status, body, dict(exc.headers) if isinstance(exc, GatewayError) else {})


async def _call(state: GatewayState, request: RestRequest) -> Call:
    route = state.routes.find(request.service, request.name)
    if route is None:
        raise GatewayError(404, "NOT_FOUND", f"{request.service} has no operation {request.name!r}")
    if request.method != route.method:
        raise GatewayError(
            405,
            "METHOD_NOT_ALLOWED",
            f"use {route.method} {route.path}",
            headers={"Allow": route.method},
        )
    headers = request.headers
    identity = state.auth.identify(headers)
    payload = await requests.payload(route, headers, request.query, request.read_body)
    return Call(
        route=route,
        payload=payload,
        identity=identity,
        correlation_id=request.correlation_id,
        min_position=requests.min_position(headers),
        idempotency_key=(
            idempotency.command_key(headers) if route.contract.kind == "command" else None
        ),
        traceparent=requests.traceparent(headers),
        client=request.client,
    )
