"""Checking a payload against its contract's JSON Schema before anything is published."""

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import fastjsonschema

from gateway.errors import GatewayError
from gateway.routes import Route

Validator = Callable[[dict[str, Any]], Any]


@lru_cache(maxsize=1024)
def _compiled(schema: str) -> Validator:
    # defaults left out: the check then leaves the payload as it is, and needs no copy of it
    return fastjsonschema.compile(json.loads(schema), use_default=False)


def validate(route: Route, payload: dict[str, Any]) -> None:
    """Refuse (400 VALIDATION_ERROR, naming the field) what the service would refuse."""
    check = _compiled(route.input_schema_text)
    try:
        check(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        field = ".".join(str(p) for p in exc.path[1:]) or "(body)"
        message = exc.message.removeprefix(f"data.{field} ").removeprefix("data ")
        raise GatewayError(
            400,
            "VALIDATION_ERROR",
            f"invalid {route.contract.message_type}",
            [{"field": field, "message": message}],
        ) from exc
