"""The gateway's error body, fixed by the platform design, for every failure."""

from typing import Any

from fastapi.responses import JSONResponse

from pipelines.errors import PlatformError


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


def error_response(
    status: int,
    code: str,
    message: str,
    correlation_id: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "correlationId": correlation_id,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def platform_error_response(exc: PlatformError, correlation_id: str) -> JSONResponse:
    headers = exc.headers if isinstance(exc, GatewayError) else None
    return error_response(exc.status, exc.code, exc.message, correlation_id, exc.details, headers)
