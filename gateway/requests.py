"""Turning an HTTP request into a contract payload and call metadata."""

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from gateway import nesting
from gateway.errors import GatewayError
from gateway.routes import Route

log = logging.getLogger("banyan.gateway")
JSON = re.compile(r"application/([!#$&^_.+\w-]+\+)?json", re.IGNORECASE)
POSITION = re.compile(r"[0-9]{1,19}")
MAX_POSITION = 2**63 - 1  # the log's positions are PostgreSQL bigints
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


Headers = Mapping[str, str]  # a request's, names in lower case: the first of each


async def payload(
    route: Route, headers: Headers, query: bytes, read_body: Callable[[], Awaitable[bytes]]
) -> dict[str, Any]:
    """The body (its size limited by `bodylimit`) or the query string: the contract's input."""
    if route.method == "GET":
        return query_payload(route, query)
    require_json(headers)
    body = await read_body()
    if b"\\u0000" in body or b"\x00" in body:
        raise GatewayError(400, "VALIDATION_ERROR", "NUL characters are not allowed")
    try:
        data = json.loads(body or b"{}")
    except RecursionError as exc:
        raise nesting.too_deep() from exc
    except ValueError as exc:
        raise GatewayError(400, "VALIDATION_ERROR", f"body is not valid JSON: {exc}") from exc
    nesting.check(data, body)
    if not isinstance(data, dict):
        raise GatewayError(400, "VALIDATION_ERROR", "body must be a JSON object")
    return data


def require_json(headers: Headers) -> None:
    """415 unless the body is JSON (`application/json`, `application/*+json`); a request with
    no body needs no Content-Type, one with a body does (curl's default form type is refused)."""
    content_type = headers.get("content-type")
    if content_type is None:
        if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
            return
    elif JSON.fullmatch(content_type.split(";", 1)[0].strip()):
        return
    raise GatewayError(
        415, "UNSUPPORTED_MEDIA_TYPE", "send the body as JSON (Content-Type: application/json)"
    )


def query_payload(route: Route, query: bytes) -> dict[str, Any]:
    """Query-string fields typed by the contract's JSON Schema (lists from repeated keys)."""
    properties = route.contract.input_schema.get("properties", {})
    fields: dict[str, list[str]] = {}  # as Starlette's QueryParams reads them, in order
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in value:
            raise GatewayError(400, "VALIDATION_ERROR", "NUL characters are not allowed")
        fields.setdefault(name, []).append(value)
    out: dict[str, Any] = {}
    for name, values in fields.items():
        schema = properties.get(name, {})
        out[name] = (
            [_typed(v, schema.get("items", {})) for v in values]
            if _is(schema, "array")
            else _typed(values[-1], schema)
        )
    return out


def _is(schema: dict[str, Any], kind: str) -> bool:
    return schema.get("type") == kind or any(o.get("type") == kind for o in schema.get("anyOf", []))


def _typed(value: str, schema: dict[str, Any]) -> Any:
    try:
        if _is(schema, "integer"):
            return int(value)
        if _is(schema, "number"):
            return float(value)
    except ValueError:
        return value  # the service answers VALIDATION_ERROR naming the field
    if _is(schema, "boolean"):
        return value.lower() in ("1", "true", "yes")
    return value


def min_position(headers: Headers) -> int:
    """`X-Min-Position`: a position in the log, a bigint (0 without the header)."""
    raw = headers.get("x-min-position")
    if raw is None:
        return 0
    if not POSITION.fullmatch(raw) or int(raw) > MAX_POSITION:
        raise GatewayError(
            400, "VALIDATION_ERROR", f"X-Min-Position must be a number from 0 to {MAX_POSITION}"
        )
    return int(raw)


def traceparent(headers: Headers) -> str | None:
    value = headers.get("traceparent")
    if value is not None and not TRACEPARENT.match(value):
        log.warning("ignoring an invalid traceparent header: %r", value[:80])
        return None
    return value
