"""The `Idempotency-Key` of a command at the edge: checked, assigned when the client sent none,
and returned, so that a client can retry a 503 or 504 (the command may have been applied)."""

import re
import uuid
from collections.abc import Mapping

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


def command_key(headers: Mapping[str, str]) -> str:
    """The key a REST command is sent with (checked, or new), to be returned with its answer."""
    return checked_key(headers) or new_key()
