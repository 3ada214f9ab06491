"""The REST contract routes' one layer, in front of the FastAPI app (`GatewayApp`).

A request to `/api/{service}/{name}` (a CORS preflight aside) is answered here, with what the
app's layers would do around it, in one pass: its span and access line (`TracingMiddleware`),
the correlation id and the body limit (`Correlate`), HEAD as GET, CORS and GZip
(`finishing`); the answer goes out in two `send` calls. Everything else (docs, GraphQL,
WebSocket, health, metrics, preflights) goes through the app and its layers.
"""

import logging
import re
import time
from collections.abc import Iterable, Sequence
from functools import partial

from fastapi import FastAPI
from opentelemetry.trace import SpanKind
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway import correlation, rest
from gateway.bodylimit import counted, too_large
from gateway.errors import GatewayError
from gateway.finishing import Finishing
from gateway.invoke import Outcome
from gateway.state import GatewayState
from pipelines.telemetry import http
from pipelines.telemetry.scope import WorkScope

SERVICE = "gateway"
JSON = (b"content-type", b"application/json")


class Edge:
    """Answers the REST contract calls `GatewayApp` hands it, whole."""

    def __init__(self, state: GatewayState, finishing: Finishing) -> None:
        self.state = state
        self.finishing = finishing
        self.limit = state.settings.max_body_bytes
        self.access_log = state.settings.access_log

    @staticmethod
    def takes(scope: Scope) -> re.Match[str] | None:
        """The service and name of a REST contract call (a CORS preflight is not one)."""
        match = rest.PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match and scope["method"] == "OPTIONS" and _is_preflight(scope["headers"]):
            return None
        return match

    async def serve(self, scope: Scope, receive: Receive, send: Send, path: re.Match[str]) -> None:
        started = time.perf_counter()
        headers = _first_of_each(scope["headers"])
        method = scope["method"]
        correlation_id, refused = correlation.accept(headers.get("x-correlation-id"))
        with WorkScope(SERVICE, correlation_id, headers, http.span_method(method), SpanKind.SERVER,
                       lambda: http.request_attributes(scope, headers)) as span:  # fmt: skip
            if refused:
                given = GatewayError(400, "VALIDATION_ERROR", correlation.INVALID_ID)
                outcome = rest.failure(given, correlation_id)
            else:
                outcome = await self._answer(scope, receive, headers, path, correlation_id)
            raw = _raw_headers(outcome, correlation_id)
            body = await self.finishing.finish(
                raw, outcome.body, headers.get("origin"), headers.get("accept-encoding", "")
            )
            await send({"type": "http.response.start", "status": outcome.status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            if span.is_recording():
                http.record_response(span, outcome.status, correlation_id)
                http.name_span(span, http.span_method(method), rest.ROUTE)
            if self.access_log and http.access_log.isEnabledFor(logging.INFO):
                seconds = time.perf_counter() - started
                http.access_line(scope, outcome.status, seconds, correlation_id)
        self.state.metrics.answered(method, outcome.status, time.perf_counter() - started)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        headers: dict[str, str],
        path: re.Match[str],
        correlation_id: str,
    ) -> Outcome:
        """The contract's answer, the platform's 500 if anything unexpected fails."""
        try:
            length = headers.get("content-length")
            if length is not None and int(length) > self.limit:
                return rest.failure(too_large(self.limit), correlation_id)
            client = scope.get("client")
            body = receive if length is not None else counted(receive, self.limit)
            request = rest.RestRequest(
                method="GET" if scope["method"] == "HEAD" else scope["method"],
                service=path[1],
                name=path[2],
                headers=headers,
                query=scope["query_string"],
                client=client[0] if client else "",
                correlation_id=correlation_id,
                read_body=partial(_body, body),
            )
            return await rest.answer(self.state, request)
        except Exception as exc:
            unexpected = GatewayError(500, "INTERNAL_ERROR", "internal error")
            return rest.failure(unexpected, correlation_id, cause=exc)


class GatewayApp(FastAPI):
    """The gateway's FastAPI app, whose REST contract routes `edge` answers before its layers."""

    edge: Edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if path := Edge.takes(scope):
            await self.edge.serve(scope, receive, send, path)
        else:
            await super().__call__(scope, receive, send)


def _first_of_each(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """A request's headers by name (the server lower-cased them): the first of each, as
    Starlette's `Headers.get` gives it."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}


def _is_preflight(raw: Iterable[tuple[bytes, bytes]]) -> bool:
    names = {k for k, _ in raw}
    return b"origin" in names and b"access-control-request-method" in names


def _raw_headers(outcome: Outcome, correlation_id: str) -> list[tuple[bytes, bytes]]:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers.items()]
    raw += [(b"content-length", str(len(outcome.body)).encode()), JSON,
            (correlation.HEADER, correlation_id.encode("latin-1"))]  # fmt: skip
    return raw


async def _body(receive: Receive) -> bytes:
    """The whole body, as Starlette's `Request.body` reads it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
