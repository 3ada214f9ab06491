"""Calling a contract for an HTTP or GraphQL request: the checks, the cache, the bus.

Order: permissions (layer 1), rate limit and the query cache (one Redis round trip), service
health and circuit breaker, then the request over RabbitMQ with its timeout. Every answer is an
`Outcome`.
"""

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.admission import Admission
from gateway.auth import Identity
from gateway.errors import GatewayError, log_server_error
from gateway.ratelimit import refuse_over_limit
from gateway.routes import Route
from gateway.state import GatewayState
from gateway.validation import validate
from pipelines import headers as h
from pipelines import telemetry
from pipelines.errors import PlatformError, status_for
from pipelines.rpc import Response


@dataclass
class Outcome:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Call:
    route: Route
    payload: dict[str, Any]
    identity: Identity
    correlation_id: str
    min_position: int = 0
    idempotency_key: str | None = None
    traceparent: str | None = None
    client: str = ""  # the caller's address: anonymous callers are limited per address


async def invoke(state: GatewayState, call: Call) -> Outcome:
    contract = call.route.contract
    state.auth.authorize(call.identity, contract)
    validate(call.route, call.payload)
    body = encode_payload(call.payload)
    caller = call.identity.caller
    telemetry.set_user(caller.user_id if caller else None)
    admission = await state.admissions.admit(call, body)
    refuse_over_limit(admission.verdict, state.metrics.rate_limited.inc)
    outcome = await _answer(state, call, body, admission)
    outcome.headers.update(admission.verdict.headers())
    return outcome


def encode_payload(payload: dict[str, Any]) -> bytes:
    """The payload as the bus carries it, UTF-8 JSON with its keys sorted: canonical, so the
    same bytes name its cached answer. What Python's JSON parser takes but is no JSON (NaN, an
    infinity, text holding a lone surrogate, which a `\\u` escape can name) is refused here:
    the services' parser refuses it, from behind the bus."""
    try:
        return json.dumps(
            payload, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
        ).encode()
    except UnicodeEncodeError as exc:
        raise GatewayError(
            400, "VALIDATION_ERROR", "text must be Unicode: a lone surrogate is not"
        ) from exc
    except ValueError as exc:
        raise GatewayError(
            400, "VALIDATION_ERROR", "numbers must be finite: JSON has no NaN or Infinity"
        ) from exc


async def _answer(state: GatewayState, call: Call, body: bytes, admission: Admission) -> Outcome:
    route = call.route
    if not state.routes.health.get(route.service, True):
        raise GatewayError(503, "SERVICE_UNAVAILABLE", f"{route.service} has no healthy instance")
    if admission.hit is not None:
        return Outcome(200, admission.hit.body, {"X-Cache": "hit"})
    breaker = state.breakers.get(route.service)
    if not breaker.allow():
        raise GatewayError(503, "CIRCUIT_BREAKER_OPEN", f"{route.service} is failing; retry later")
    try:
        with telemetry.continuing(call.traceparent):  # no HTTP span: a websocket's call
            response = await _request(state, call, body)
    except PlatformError as exc:
        if exc.status < 500:  # the request could not even be sent: it says nothing of it
            raise
        breaker.record(False)  # a timeout, or the broker failed
        if call.route.contract.kind == "command":
            raise _maybe_applied(exc, call) from exc
        raise
    finally:
        breaker.release()  # a trial that ended unrecorded (bad input, cancelled) frees the slot
    outcome = to_outcome(response)
    breaker.record(outcome.status < 500)
    if response.ok:
        await state.admissions.remember(admission.cache_key, call, response)
    return outcome


async def _request(state: GatewayState, call: Call, body: bytes) -> Response:
    contract = call.route.contract
    headers: dict[str, Any] = {h.MESSAGE_TYPE: contract.message_type}
    if call.identity.token:
        headers[h.USER_TOKEN] = call.identity.token
    if call.min_position:
        headers[h.MIN_POSITION] = call.min_position
    if call.traceparent:
        headers[h.TRACEPARENT] = call.traceparent
    if call.client:
        headers[h.CLIENT_ADDRESS] = call.client
    timeout = (
        state.settings.command_timeout
        if contract.kind == "command"
        else state.settings.query_timeout
    )
    return await state.rpc.request(
        state.queue(call.route),
        body,
        timeout=timeout,
        headers=headers,
        message_id=call.idempotency_key or uuid.uuid4().hex,
        correlation_id=call.correlation_id,
    )


def _maybe_applied(exc: PlatformError, call: Call) -> GatewayError:
    """A command that timed out or lost the broker may have been applied: say how to retry."""
    return GatewayError(
        exc.status,
        exc.code,
        f"{exc.message}; the command may have been applied: send it again with the same "
        "Idempotency-Key (this answer's header) and it is applied once",
        {"mayHaveBeenApplied": True, "idempotencyKey": call.idempotency_key},
    )


def to_outcome(response: Response) -> Outcome:
    headers: dict[str, str] = {}
    if response.position is not None:
        headers["X-Event-Position"] = str(response.position)
    if h.CACHE in response.headers:
        headers["X-Cache"] = str(response.headers[h.CACHE])
    if response.ok:
        return Outcome(200, response.body, headers)
    error = (response.json() or {}).get("error", {})
    code = str(error.get("code", "INTERNAL_ERROR"))
    status = status_for(code)
    log_server_error(status, code, str(error.get("message", "")), error.get("details"))
    if status == 429:
        headers.update(_retry_after(error.get("details")))
    return Outcome(status, response.body, headers)


def _retry_after(details: Any) -> dict[str, str]:
    """A service's "try again in n seconds" (`details.retryAfter`) as the HTTP header."""
    seconds = details.get("retryAfter") if isinstance(details, dict) else None
    return {"Retry-After": str(seconds)} if isinstance(seconds, int) else {}
