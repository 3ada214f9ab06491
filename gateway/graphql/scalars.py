"""The gateway's custom scalars: `JSON` (anything), `Decimal` (exact, as a string), `Long`."""

from decimal import Decimal, InvalidOperation
from typing import Any

from ariadne import ScalarType
from graphql import FloatValueNode, IntValueNode, StringValueNode, ValueNode, value_from_ast_untyped

SDL = """
"Any JSON value: results without a declared schema, free-form objects, unions."
scalar JSON

"An exact decimal number, written as a string (\\"12.50\\"); numbers are accepted as input."
scalar Decimal

"A 64-bit integer (event positions)."
scalar Long
"""


def _same(value: Any) -> Any:
    return value


def _decimal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"not a decimal number: {value!r}")
    try:
        Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc
    return str(value)


def _decimal_literal(node: ValueNode, _variables: Any = None) -> str:
    # the literal's own text: `0.10` stays "0.10", never the float 0.1
    if isinstance(node, StringValueNode | IntValueNode | FloatValueNode):
        return _decimal(node.value)
    raise ValueError("Decimal needs a number or a string")


def _long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def _long_literal(node: ValueNode, _variables: Any = None) -> int:
    if isinstance(node, IntValueNode):
        return int(node.value)
    raise ValueError("Long needs an integer")


json_scalar = ScalarType(
    "JSON", serializer=_same, value_parser=_same, literal_parser=value_from_ast_untyped
)
decimal_scalar = ScalarType(
    "Decimal", serializer=str, value_parser=_decimal, literal_parser=_decimal_literal
)
long_scalar = ScalarType("Long", serializer=_long, value_parser=_long, literal_parser=_long_literal)
SCALARS = (json_scalar, decimal_scalar, long_scalar)
