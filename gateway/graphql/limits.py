"""Query limits, checked before anything runs, and the cap on an answer's size.

- Depth: at most 10 nested fields below a contract's field; at most 15 below `__schema` or
  `__type` (the standard introspection query nests nine `ofType` levels). Fragments add none.
- Complexity: at most 1000 points, one per field, fragments counted at each use, introspection
  included; `__schema` and `__type` cost 100 each, as each reads much of the schema. GraphiQL's
  own introspection query costs about 330; a hundred aliased `__schema` are refused.
- graphql-core's own rule bounds the nesting of introspection lists (`fields`, `inputFields`,
  `interfaces`, `possibleTypes`), which fan out.
- A document of more than 10,000 tokens is refused before it is validated.
- An answer over 1 MiB is replaced by one RESPONSE_TOO_LARGE error (mutations in the request
  have run; ask for fewer fields).
"""

import json
from collections.abc import Collection, Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    validate,
)
from graphql.utilities.type_info import TypeInfo
from graphql.validation import ASTValidationRule
from starlette.responses import Response

MAX_DEPTH = 10
MAX_INTROSPECTION_DEPTH = 15
MAX_COMPLEXITY = 1000
INTROSPECTION = frozenset({"__schema", "__type"})
INTROSPECTION_COST = 100
MAX_RESPONSE_BYTES = 1 << 20
MAX_TOKENS = 10_000  # GraphiQL's introspection query has about 400


def _error(message: str, node: OperationDefinitionNode, details: dict[str, int]) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": "VALIDATION_ERROR", "details": details})


class QueryLimits(ASTValidationRule):
    """The depth of each root field and the cost of the whole operation."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        self._memo: dict[tuple[str, int, int], tuple[int, int]] = {}
        cost = 0
        for field in self._roots(node.selection_set, set()):
            limit = MAX_INTROSPECTION_DEPTH if field.name.value in INTROSPECTION else MAX_DEPTH
            depth, field_cost = self._field(field, 0, limit)
            cost += field_cost
            if depth > limit:
                message = f"The query is {depth} fields deep; at most {limit} are allowed."
                self.report_error(_error(message, node, {"depth": depth, "maximumDepth": limit}))
                return
        if cost > MAX_COMPLEXITY:
            message = (
                f"The query exceeds the maximum cost of {MAX_COMPLEXITY}. Actual cost is {cost}"
            )
            details = {"cost": cost, "maximumCost": MAX_COMPLEXITY}
            self.report_error(_error(message, node, details))

    def _roots(self, selections: SelectionSetNode, seen: set[str]) -> Iterator[FieldNode]:
        """The operation's root fields, fragments unfolded (a cycle is refused elsewhere)."""
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._roots(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = self.context.get_fragment(selection.name.value)
                if fragment is not None:
                    yield from self._roots(fragment.selection_set, seen | {selection.name.value})

    def _field(self, field: FieldNode, level: int, limit: int) -> tuple[int, int]:
        """(depth, cost) of a field at `level` (0: a root field)."""
        own = INTROSPECTION_COST if field.name.value in INTROSPECTION else 1
        depth, cost = self._selections(field.selection_set, level + 1, limit)
        return depth, cost + own

    def _selections(
        self, selections: SelectionSetNode | None, level: int, limit: int
    ) -> tuple[int, int]:
        if selections is None or level > limit:  # deep enough to refuse: stop looking
            return level, 0
        deepest, total = level, 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                depth, cost = self._field(selection, level, limit)
            elif isinstance(selection, InlineFragmentNode):
                depth, cost = self._selections(selection.selection_set, level, limit)
            elif isinstance(selection, FragmentSpreadNode):
                depth, cost = self._fragment(selection.name.value, level, limit)
            deepest, total = max(deepest, depth), total + cost
        return deepest, total

    def _fragment(self, name: str, level: int, limit: int) -> tuple[int, int]:
        key = (name, level, limit)
        if key not in self._memo:
            self._memo[key] = (level, 0)  # a fragment cycle adds nothing (and is refused elsewhere)
            fragment = self.context.get_fragment(name)
            if fragment is not None:
                self._memo[key] = self._selections(fragment.selection_set, level, limit)
        return self._memo[key]


def parse_query(_context: Any, data: dict[str, Any]) -> DocumentNode:
    """The document, refused (a syntax error) past MAX_TOKENS, before the validation rules,
    some of which take time that grows faster than the document."""
    return parse(data["query"], max_tokens=MAX_TOKENS)


def validate_within_limits(
    schema: GraphQLSchema,
    document_ast: DocumentNode,
    rules: Collection[type[ASTValidationRule]] | None = None,
    max_errors: int | None = None,
    type_info: TypeInfo | None = None,  # in ariadne's signature; graphql-core 3.3 takes none
) -> list[GraphQLError]:
    """The limits first, alone, then the standard rules: a document over the limits is refused
    without the standard rules, which take several times as long (two hundred aliased
    `__schema` fields: about 160 against 35 ms)."""
    return validate(schema, document_ast, rules=[QueryLimits]) or validate(
        schema, document_ast, rules=rules, max_errors=max_errors
    )


def json_response(result: dict[str, Any], status: int, correlation_id: str) -> Response:
    """The answer as JSON, or a RESPONSE_TOO_LARGE error if it is over the cap."""
    body = json.dumps(result, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if len(body) > MAX_RESPONSE_BYTES:
        error = {
            "message": f"the answer is over {MAX_RESPONSE_BYTES} bytes; ask for fewer fields",
            "extensions": {
                "code": "RESPONSE_TOO_LARGE",
                "details": {"maximumBytes": MAX_RESPONSE_BYTES},
                "correlationId": correlation_id,
            },
        }
        return Response(json.dumps({"errors": [error]}), 400, media_type="application/json")
    return Response(body, status, media_type="application/json")
