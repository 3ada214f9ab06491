"""Query limits, checked before anything runs: depth at most 10, complexity at most 1000.

Depth counts nested fields (fragments add none); complexity is one point per field, fragments
included (ariadne's cost validator). Introspection fields (`__schema`, `__type`) count for
neither, so GraphiQL's own introspection query always passes.
"""

from collections.abc import Collection
from typing import Any

from ariadne.validation import cost_validator
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import ASTValidationRule

MAX_DEPTH = 10
MAX_COMPLEXITY = 1000


class DepthLimit(ASTValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        self._memo: dict[tuple[str, int], int] = {}
        depth = self._depth(node.selection_set, 0)
        if depth > MAX_DEPTH:
            self.report_error(
                GraphQLError(
                    f"The query is {depth} fields deep; at most {MAX_DEPTH} are allowed.",
                    node,
                    extensions={
                        "code": "VALIDATION_ERROR",
                        "details": {"depth": depth, "maximumDepth": MAX_DEPTH},
                    },
                )
            )

    def _depth(self, selections: SelectionSetNode | None, depth: int) -> int:
        if selections is None or depth > MAX_DEPTH:  # deep enough to refuse: stop looking
            return depth
        deepest = depth
        for selection in selections.selections:
            if isinstance(selection, FieldNode) and not selection.name.value.startswith("__"):
                deepest = max(deepest, self._depth(selection.selection_set, depth + 1))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self._depth(selection.selection_set, depth))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, self._fragment_depth(selection.name.value, depth))
        return deepest

    def _fragment_depth(self, name: str, depth: int) -> int:
        key = (name, depth)
        if key not in self._memo:
            self._memo[key] = depth  # a fragment cycle adds nothing (and is refused elsewhere)
            fragment = self.context.get_fragment(name)
            if fragment is not None:
                self._memo[key] = self._depth(fragment.selection_set, depth)
        return self._memo[key]


def rules(_context: Any, _document: DocumentNode, data: Any) -> Collection[type[ASTValidationRule]]:
    """The limits for one request (complexity needs its variables)."""
    variables = data.get("variables") if isinstance(data, dict) else None
    complexity = cost_validator(MAX_COMPLEXITY, default_cost=1, variables=variables)
    return [DepthLimit, complexity]
