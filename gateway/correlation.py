"""The gateway's own layer around every HTTP request that `edge` does not answer itself (the
edge does the same, with the same helpers, for the REST contract routes).

It accepts or creates the correlation id and echoes it on every answer, 500s included; a given
id that is not 1 to 128 visible ASCII characters is refused (400, under a new id) rather than
replaced, so that the client learns its ids are not traced. It answers an unexpected exception
with the platform's error body (never a stack trace); it refuses a body over the limit
(`bodylimit`); it counts and times.
"""

import re
import time
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.bodylimit import counted, too_large
from gateway.errors import error_response, platform_error_response
from gateway.metrics import GatewayMetrics
from pipelines import telemetry

HEADER = b"x-correlation-id"
CORRELATION_ID = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII: it goes into logs and headers
INVALID_ID = "X-Correlation-ID must be 1 to 128 visible ASCII characters"
CONTENT_LENGTH = b"content-length"


class Correlate:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, length = _given_id_and_length(scope["headers"])
        correlation_id, refused = accept(given)
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        telemetry.set_correlation(correlation_id)
        echoed = (HEADER, correlation_id.encode("latin-1"))
        status = 0

        async def send_echoing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        started = time.perf_counter()
        try:
            if refused:
                answer = error_response(400, "VALIDATION_ERROR", INVALID_ID, correlation_id)
                await answer(scope, receive, send_echoing)
            elif length is None:
                await self.app(scope, counted(receive, self.limit), send_echoing)
            elif int(length) > self.limit:
                answer = platform_error_response(too_large(self.limit), correlation_id)
                await answer(scope, receive, send_echoing)
            else:
                await self.app(scope, receive, send_echoing)
        except Exception as exc:
            if status:  # the answer has begun: nothing better to send
                raise
            answer = error_response(
                500, "INTERNAL_ERROR", "internal error", correlation_id, cause=exc
            )
            await answer(scope, receive, send_echoing)
        self.metrics.answered(scope["method"], status, time.perf_counter() - started)


def accept(given: str | None) -> tuple[str, bool]:
    """The request's correlation id (`given`, or a new one), and whether `given` is refused."""
    refused = given is not None and not CORRELATION_ID.fullmatch(given)
    return (given if given and not refused else uuid.uuid4().hex), refused


def _given_id_and_length(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The request's correlation id and content length, in one pass over its raw headers (the
    first of each, as `Headers.get`; the server has lower-cased their names)."""
    given = length = None
    for key, value in headers:
        if key == HEADER and given is None:
            given = value.decode("latin-1")
        elif key == CONTENT_LENGTH and length is None:
            length = value.decode("latin-1")
    return given, length
