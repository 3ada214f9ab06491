"""The OpenAPI document of the routes the registry currently holds.

Its `info.version` is a digest of the document: it changes when the contracts change, and
only then (not with each registry update or gateway restart).
"""

import hashlib
import json
from typing import Any

from gateway.idempotency import HEADER as KEY_HEADER
from gateway.routes import RouteTable, camel
from pipelines.idempotency import MAX_KEY_BYTES
from pipelines.schema_components import REFS, Components

ERROR = {"$ref": REFS + "Error"}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
                "correlationId": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
}

IDEMPOTENCY_KEY = {
    "name": KEY_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes the command safe to retry, say after a 503 or 504 (it may have been applied): "
        "the same caller sending this operation again with the same key and body gets the "
        "first answer, and the command is applied once; with another body, 422 "
        "IDEMPOTENCY_KEY_REUSED. A key belongs to one caller and one operation, and is "
        "remembered for COMMAND_RESULT_RETENTION (7 days by default). Without one, the gateway "
        "assigns a key and returns it in the response's Idempotency-Key header."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES, "pattern": "^[ -~]+$"},
}
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
RETURNED_KEY = {
    KEY_HEADER: {
        "description": "the key the command was sent with: the client's, or one assigned",
        "schema": {"type": "string"},
    }
}
CORRELATION_ID = {
    "name": "X-Correlation-ID",
    "in": "header",
    "required": False,
    "description": "Ties the request to its logs and traces (1 to 128 visible ASCII "
    "characters); the gateway assigns one when absent and echoes it on every answer.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
}
MIN_POSITION = {
    "name": "X-Min-Position",
    "in": "header",
    "required": False,
    "description": "Read your writes: answer only once the read model has reached this log "
    "position (a command's X-Event-Position), waiting up to READ_YOUR_WRITES_TIMEOUT.",
    "schema": {"type": "integer", "minimum": 0},
}
ECHOED_ID = {
    "X-Correlation-ID": {
        "description": "the request's correlation id",
        "schema": {"type": "string"},
    }
}
EVENT_POSITION = {
    "X-Event-Position": {
        "description": "the log position of the command's last event: send it as "
        "X-Min-Position to read this write",
        "schema": {"type": "integer"},
    }
}
ERRORS = {
    "400": "VALIDATION_ERROR: the request does not match the contract",
    "401": "NO_AUTH_HEADER, INVALID_TOKEN or TOKEN_EXPIRED",
    "403": "FORBIDDEN: the caller lacks a permission the operation requires",
    "404": "NOT_FOUND: no such operation, or the object does not exist for this caller",
    "409": "CONFLICT: the object changed or is in a state that refuses the command",
    "413": "PAYLOAD_TOO_LARGE: the body is over MAX_BODY_BYTES",
    "415": "UNSUPPORTED_MEDIA_TYPE: the body is not application/json",
    "422": "IDEMPOTENCY_KEY_REUSED: this key was sent with another body",
    "429": "RATE_LIMIT_EXCEEDED: wait Retry-After seconds",
    "500": "HANDLER_FAILED: the service failed",
    "503": "SERVICE_UNAVAILABLE or CIRCUIT_BREAKER_OPEN: a command may have been applied",
    "504": "TIMEOUT: no answer in time; a command may have been applied",
}
COMMAND_ONLY = {"409", "413", "415", "422"}


def _responses(kind: str, output: dict[str, Any]) -> dict[str, Any]:
    """The result, and each error status the operation can answer with, with their headers."""
    returned = {**ECHOED_ID, **(RETURNED_KEY if kind == "command" else {})}
    ok = {"description": "result", "content": {"application/json": {"schema": output}}}
    ok["headers"] = {**returned, **(EVENT_POSITION if kind == "command" else {})}
    errors = {
        status: {
            "description": description,
            "headers": returned,
            "content": {"application/json": {"schema": ERROR}},
        }
        for status, description in ERRORS.items()
        if kind == "command" or status not in COMMAND_ONLY
    }
    return {"200": ok, **errors}


def document(table: RouteTable) -> dict[str, Any]:
    components = Components(Error=ERROR_SCHEMA)
    paths: dict[str, Any] = {}
    for route in table.all():
        contract = route.contract
        schema = components.placed(contract.input_schema, route.service)
        output = components.placed(contract.output_schema or {}, route.service)
        result = components.reference(output, route.service)
        operation: dict[str, Any] = {
            "operationId": camel(contract.message_type),
            "tags": [route.service],
            "summary": contract.description or contract.message_type,
            "responses": _responses(contract.kind, result),
        }
        if contract.required_permissions:
            operation["security"] = [{"bearer": []}]
            operation["description"] = "Requires " + ", ".join(contract.required_permissions)
        if route.method == "POST":
            operation["parameters"] = [IDEMPOTENCY_KEY, CORRELATION_ID]
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": components.reference(schema, route.service)}
                },
            }
        else:
            required = set(schema.get("required", []))
            operation["parameters"] = [
                *({"name": name, "in": "query", "required": name in required, "schema": prop}
                  for name, prop in schema.get("properties", {}).items()),
                MIN_POSITION, CORRELATION_ID,
            ]  # fmt: skip
        paths[route.path] = {route.method.lower(): operation}
    content = {
        "paths": paths,
        "components": {"schemas": components.schemas, "securitySchemes": BEARER},
    }
    return {"openapi": "3.1.0", "info": _info(content), **content}


def _info(content: dict[str, Any]) -> dict[str, str]:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return {"title": "Banyan API gateway", "version": f"1.0.0+{digest}"}
