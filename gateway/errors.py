"""The gateway's error body, fixed by the platform design, for every failure."""

import json
import logging
from typing import Any

from starlette.responses import Response

from pipelines.errors import PlatformError

log = logging.getLogger("banyan.gateway")


class GatewayError(PlatformError):
    """An error the gateway itself answers with (before or instead of a service)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, details)
        self.status, self.code = status, code
        self.headers = headers or {}


def log_server_error(
    status: int,
    code: str,
    message: str,
    details: Any,
    correlation_id: str | None = None,
    cause: BaseException | None = None,
) -> None:
    """A 5xx answer's line, with its cause (an unexpected error's traceback): the client sees
    only a code and a message. Without `correlation_id`, the request's own (from the log
    context)."""
    if status < 500:
        return
    log.log(
        logging.WARNING if status in (503, 504) else logging.ERROR,
        "answered %d %s: %s",
        status,
        code,
        message,
        extra={"httpStatus": status, "code": code, "details": details,
               "correlationId": correlation_id},
        exc_info=cause,
    )  # fmt: skip


def error_body(code: str, message: str, correlation_id: str, details: Any = None) -> bytes:
    """The error body, encoded as Starlette's JSONResponse encodes it."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "correlationId": correlation_id,
        }
    }
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    correlation_id: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
    cause: BaseException | None = None,
) -> Response:
    log_server_error(status, code, message, details, correlation_id, cause)
    body = error_body(code, message, correlation_id, details)
    return Response(body, status, headers, media_type="application/json")


def platform_error_response(exc: PlatformError, correlation_id: str) -> Response:
    headers = exc.headers if isinstance(exc, GatewayError) else None
    return error_response(exc.status, exc.code, exc.message, correlation_id, exc.details, headers)
