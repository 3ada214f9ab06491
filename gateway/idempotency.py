"""The `Idempotency-Key` of a command at the edge: checked, assigned when the client sent none,
and returned, so that a client can retry a 503 or 504 (the command may have been applied)."""

import re
import uuid
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError
from pipelines.idempotency import MAX_KEY_BYTES

HEADER = "Idempotency-Key"
VALID = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_BYTES}}}")  # printable ASCII


def checked_key(headers: Mapping[str, str]) -> str | None:
    """The request's key (None if it sent none), or 400 VALIDATION_ERROR naming the header."""
    key = headers.get(HEADER.lower())
    if key is not None and not VALID.fullmatch(key):
        raise GatewayError(
            400,
            "VALIDATION_ERROR",
            f"{HEADER} must be 1 to {MAX_KEY_BYTES} printable ASCII characters",
            {"header": HEADER},
        )
    return key


def new_key() -> str:
    return uuid.uuid4().hex


def command_key(request: Request) -> str:
    """The key a REST command is sent with (checked, or new), kept to be returned."""
    request.state.idempotency_key = key = checked_key(request.headers) or new_key()
    return key


def return_key(request: Request, response: Response) -> None:
    """Tell the client the key its command was sent with, whatever the answer."""
    key = getattr(request.state, "idempotency_key", None)
    if key is not None:
        response.headers[HEADER] = key
