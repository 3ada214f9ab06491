"""Reading platform headers off an incoming message, and the shape of a reply."""

import gzip
import json
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError as PydanticValidationError

from pipelines import headers as h
from pipelines.contracts import MAX_SCHEMA_VERSION, Contract
from pipelines.errors import PlatformError, ValidationError
from pipelines.settings import MAX_MESSAGE_BYTES
from pipelines.upcasting import read_event

COMPRESS_ABOVE = 1024  # bytes; larger bodies travel gzip-compressed
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads the gzip format
VERSION_DIGITS = len(str(MAX_SCHEMA_VERSION))


def encode_body(body: bytes) -> tuple[bytes, str | None]:
    """The body to send and its content encoding."""
    if len(body) > COMPRESS_ABOVE:
        return gzip.compress(body, compresslevel=5), "gzip"
    return body, None


@dataclass(slots=True, frozen=True)
class Incoming:
    message_id: str | None
    correlation_id: str
    causation_id: str | None
    reply_to: str | None
    reply_correlation: str | None
    headers: dict[str, Any]
    body: bytes
    malformed: str | None = None  # why the body could not be read (it is then empty)

    @classmethod
    def from_raw(
        cls, raw: AbstractIncomingMessage, max_bytes: int = MAX_MESSAGE_BYTES
    ) -> "Incoming":
        headers = dict(raw.headers or {})
        body, malformed = _unpacked(raw.body, raw.content_encoding, max_bytes)
        correlation = headers.get(h.CORRELATION_ID) or raw.correlation_id or raw.message_id
        return cls(
            message_id=raw.message_id,
            correlation_id=str(correlation or uuid.uuid4()),
            causation_id=_text(headers.get(h.CAUSATION_ID)),
            reply_to=raw.reply_to,
            reply_correlation=raw.correlation_id,
            headers=headers,
            body=body,
            malformed=malformed,
        )

    def header(self, name: str) -> str | None:
        return _text(self.headers.get(name))


def failure_fields(raw: AbstractIncomingMessage) -> dict[str, Any]:
    """What a log line about a failed delivery of `raw` names it by."""
    headers = raw.headers or {}
    return {
        "messageId": raw.message_id,
        "messageType": _text(headers.get(h.MESSAGE_TYPE)),
        "correlationId": _text(headers.get(h.CORRELATION_ID)) or raw.correlation_id,
        "redeliveries": redeliveries(raw),
    }


def resent(
    raw: AbstractIncomingMessage, headers: dict[str, Any], *, reply_to: bool = False
) -> aio_pika.Message:
    """A persistent copy of `raw` with `headers`, to publish again (requeued, dead-lettered,
    replayed); `reply_to` keeps its reply address, which only a live request still has."""
    return aio_pika.Message(
        raw.body,
        headers=headers,
        message_id=raw.message_id,
        correlation_id=raw.correlation_id,
        reply_to=raw.reply_to if reply_to else None,
        content_type=raw.content_type,
        content_encoding=raw.content_encoding,
        type=raw.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def redeliveries(raw: AbstractIncomingMessage) -> int:
    """How many times the platform has put `raw` back in its queue."""
    count = (raw.headers or {}).get(h.REDELIVERY_COUNT)
    return count if isinstance(count, int) else 0


def _unpacked(body: bytes, encoding: str | None, limit: int) -> tuple[bytes, str | None]:
    """The body as sent, or empty and the reason it cannot be read: bad input, not an outage
    (gzip's errors are OSErrors, which would otherwise pass for a lost connection), and never
    more than `limit` bytes once decompressed (a small gzip bomb is refused, not inflated)."""
    too_large = f"body over {limit} bytes"
    if encoding != "gzip":
        return (body, None) if len(body) <= limit else (b"", too_large)
    inflater = zlib.decompressobj(GZIP_WBITS)
    try:
        unpacked = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        return b"", f"body is not valid gzip: {exc}"
    if len(unpacked) > limit:
        return b"", f"{too_large} once decompressed"
    if not inflater.eof:
        return b"", "body is not valid gzip: it ends early"
    return unpacked, None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(contract: type[Contract], incoming: Incoming) -> Contract:
    """The message as its contract, or a VALIDATION_ERROR naming each bad field."""
    if incoming.malformed is not None:
        raise ValidationError(incoming.malformed, [{"field": "(body)"}])
    body = incoming.body
    if b"\\u0000" in body:  # PostgreSQL cannot store it in text or jsonb
        raise ValidationError("NUL characters are not allowed", [{"field": "(body)"}])
    try:
        current = contract.__version__  # 1 for commands, queries and most events: no work
        if current > 1 and (written := _schema_version(incoming)) < current:
            return read_event(contract, _json_object(body), written)  # type: ignore[type-var]
        return contract.model_validate_json(body)
    except PydanticValidationError as exc:
        details = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "(body)",
                "message": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationError(f"invalid {contract.message_type()}", details) from exc


def schema_version(value: Any) -> int | None:
    """An `x-schema-version` header: the version of its class an event was written with
    (absent: 1, as before versions); None when it is not a version."""
    text = _text(value)
    if text is None:
        return 1
    if not (text.isdigit() and len(text) <= VERSION_DIGITS):
        return None
    return int(text) if 0 < int(text) <= MAX_SCHEMA_VERSION else None


def _schema_version(incoming: Incoming) -> int:
    version = schema_version(incoming.headers.get(h.SCHEMA_VERSION))
    if version is None:
        raise ValidationError(f"bad {h.SCHEMA_VERSION} header", [{"field": h.SCHEMA_VERSION}])
    return version


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValidationError("the body is not JSON", [{"field": "(body)"}]) from exc
    if not isinstance(data, dict):
        raise ValidationError("the body is not a JSON object", [{"field": "(body)"}])
    return data


@dataclass(slots=True, frozen=True)
class Reply:
    body: bytes
    ok: bool = True
    position: int | None = None
    cache: str | None = None  # "hit" or "miss" for cached queries
    # queries: the projection position the answer reflects; a cached query's answer without
    # one is not to be cached (read on a standby that lagged the primary)
    read_position: int | None = None

    @classmethod
    def error(cls, exc: PlatformError, correlation_id: str) -> "Reply":
        body = exc.to_body()
        body["error"]["correlationId"] = correlation_id
        return cls(json.dumps(body, default=str).encode(), ok=False)
