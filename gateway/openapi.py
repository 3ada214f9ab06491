"""The OpenAPI document of the routes the registry currently holds."""

import json
from typing import Any

from gateway.idempotency import HEADER as KEY_HEADER
from gateway.routes import RouteTable, camel
from pipelines.idempotency import MAX_KEY_BYTES

ERROR = {"$ref": "#/components/schemas/Error"}
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
RETURNED_KEY = {
    KEY_HEADER: {
        "description": "the key the command was sent with: the client's, or one assigned",
        "schema": {"type": "string"},
    }
}
KEY_REUSED = {
    "description": "IDEMPOTENCY_KEY_REUSED: this key was sent with another body",
    "content": {"application/json": {"schema": ERROR}},
}


def _idempotent(operation: dict[str, Any]) -> None:
    """Document a command's Idempotency-Key: the request header, the 422, the key returned."""
    operation["parameters"] = [IDEMPOTENCY_KEY]
    responses = operation["responses"]
    responses["422"] = KEY_REUSED
    for response in (responses["200"], responses["default"]):
        response["headers"] = RETURNED_KEY


def _hoist(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's `$defs` into components and point its references there."""
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    text = json.dumps(schema)
    if "#/$defs/" not in text:
        return schema
    hoisted: dict[str, Any] = json.loads(text.replace("#/$defs/", "#/components/schemas/"))
    return hoisted


def document(table: RouteTable) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for route in table.all():
        contract = route.contract
        schema = _hoist(dict(contract.input_schema), components)
        output = _hoist(dict(contract.output_schema or {}), components)
        operation: dict[str, Any] = {
            "operationId": camel(contract.message_type),
            "tags": [route.service],
            "summary": contract.description or contract.message_type,
            "responses": {
                "200": {
                    "description": "result",
                    "content": {"application/json": {"schema": output}},
                },
                "default": {
                    "description": "error",
                    "content": {"application/json": {"schema": ERROR}},
                },
            },
        }
        if contract.required_permissions:
            operation["security"] = [{"bearer": []}]
            operation["description"] = "Requires " + ", ".join(contract.required_permissions)
        if contract.kind == "command":
            _idempotent(operation)
        if route.method == "POST":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        else:
            required = set(schema.get("required", []))
            operation["parameters"] = [
                {"name": name, "in": "query", "required": name in required, "schema": prop}
                for name, prop in schema.get("properties", {}).items()
            ]
        paths[route.path] = {route.method.lower(): operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Banyan API gateway", "version": str(table.version)},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
