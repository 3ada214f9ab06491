"""A bound on how deeply a request's JSON nests (a REST body, GraphQL variables): 400
VALIDATION_ERROR past 32 levels, rather than a recursion error somewhere further in."""

from typing import Any

from gateway.errors import GatewayError

MAX_NESTING = 32


def check(data: Any, raw: bytes) -> None:
    """Refuse `data` (parsed from `raw`) if it nests more than MAX_NESTING lists and objects."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:  # the usual case, at C speed
        return
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        elif not isinstance(value, list):
            continue
        if depth > MAX_NESTING:
            raise too_deep()
        stack.extend((child, depth + 1) for child in value)


def too_deep() -> GatewayError:
    return GatewayError(400, "VALIDATION_ERROR", f"JSON nested more than {MAX_NESTING} levels deep")
