"""What a GraphQL request's span and metrics say: the operation (`mutation placeOrder`), and
whether it failed. GraphQL answers most failures with HTTP 200, so the status code alone
would call them successes."""

from typing import Any

from graphql import DocumentNode, OperationDefinitionNode
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from gateway.graphql import limits
from gateway.graphql.context import GraphQLContext
from gateway.metrics import GatewayMetrics
from pipelines.errors import known_code

GATEWAY_CODES = frozenset(
    {"INTERNAL_ERROR", "CIRCUIT_BREAKER_OPEN", "RESPONSE_TOO_LARGE", "METHOD_NOT_ALLOWED"}
)


def parse_query(context: Any, data: dict[str, Any]) -> DocumentNode:
    """The document (`limits.parse_query`), its operation named on the request's span."""
    document = limits.parse_query(context, data)
    kind, name = operation(document, data.get("operationName"))
    if isinstance(context, GraphQLContext):
        context.operation_type = kind
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{kind} {name}" if name else kind)
        span.set_attribute("graphql.operation.type", kind)
        if name:
            span.set_attribute("graphql.operation.name", name)
    return document


def operation(document: DocumentNode, chosen: str | None) -> tuple[str, str | None]:
    """(type, name) of the operation a request runs: its name, else its first field's."""
    found = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    picked = next((d for d in found if d.name and d.name.value == chosen), None)
    picked = picked or (found[0] if found else None)
    if picked is None:
        return "unknown", None
    if picked.name is not None:
        return picked.operation.value, picked.name.value
    fields = picked.selection_set.selections
    first = getattr(fields[0], "name", None) if fields else None
    return picked.operation.value, first.value if first is not None else None


def record_errors(
    metrics: GatewayMetrics, context: GraphQLContext | None, errors: list[dict[str, Any]]
) -> None:
    """Count the answer's errors (by code, from a closed set) and mark its span failed."""
    if not errors:
        return
    kind = context.operation_type if context is not None else "unknown"
    codes = [str((e.get("extensions") or {}).get("code", "INTERNAL_ERROR")) for e in errors]
    for code in codes:
        label = code if code in GATEWAY_CODES else known_code(code)
        metrics.graphql_errors.labels(kind, label).inc()
    span = trace.get_current_span()
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, ", ".join(sorted(set(codes)))))
