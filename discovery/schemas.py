"""JSON Schemas as contracts carry them: well-formedness, and local `$ref` resolution.

Not a full meta-schema validator: it checks the keywords contracts use and the gateway and the
compatibility check rely on (types, properties, required, items, combinators, local refs).
"""

import re
from collections.abc import Iterator
from typing import Any

JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SCHEMA_VALUES = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
)
COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
MAX_DEPTH = 64

Problem = tuple[str, str]  # (where, what is wrong)


def schema_problems(schema: Any, where: str) -> list[Problem]:
    """Everything wrong with `schema`; `where` prefixes each location."""
    return list(_check(schema, schema, where, 0))


def resolve(node: Any, root: Any) -> Any:
    """Follow local `$ref`s (`#`, `#/$defs/Name`, any JSON pointer into `root`)."""
    for _ in range(MAX_DEPTH):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return node
        node = pointer(node["$ref"], root)
    return None


def pointer(ref: str, root: Any) -> Any:
    """The part of `root` a local reference points at, or None."""
    if ref != "#" and not ref.startswith("#/"):
        return None
    node = root
    for token in ref[2:].split("/") if ref != "#" else ():
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _check(node: Any, root: Any, where: str, depth: int) -> Iterator[Problem]:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        yield where, "a schema must be a JSON object or a boolean"
        return
    if depth > MAX_DEPTH:
        yield where, f"nested deeper than {MAX_DEPTH} levels"
        return
    yield from _check_type(node, where)
    yield from _check_keywords(node, root, where)
    for key in SCHEMA_MAPS:
        if key in node:
            if not isinstance(node[key], dict):
                yield f"{where}.{key}", "must map names to schemas"
                continue
            for name, child in node[key].items():
                yield from _check(child, root, f"{where}.{key}.{name}", depth + 1)
    for key in SCHEMA_LISTS:
        if key in node:
            if not isinstance(node[key], list) or not node[key]:
                yield f"{where}.{key}", "must be a non-empty list of schemas"
                continue
            for i, child in enumerate(node[key]):
                yield from _check(child, root, f"{where}.{key}[{i}]", depth + 1)
    for key in SCHEMA_VALUES:
        if key in node:
            yield from _check(node[key], root, f"{where}.{key}", depth + 1)


def _check_type(node: dict[str, Any], where: str) -> Iterator[Problem]:
    if "type" not in node:
        return
    kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
    unknown = [k for k in kinds if not isinstance(k, str) or k not in JSON_TYPES]
    if unknown or not kinds:
        yield f"{where}.type", f"unknown type {unknown[0] if unknown else '[]'!r}"
    elif len(set(kinds)) != len(kinds):
        yield f"{where}.type", "lists a type twice"


def _check_keywords(node: dict[str, Any], root: Any, where: str) -> Iterator[Problem]:
    required = node.get("required", [])
    if not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        yield f"{where}.required", "must be a list of property names"
    elif isinstance(node.get("properties"), dict):
        for name in required:
            if name not in node["properties"]:
                yield f"{where}.required", f"requires {name!r}, which is not among its properties"
    if "enum" in node and not (isinstance(node["enum"], list) and node["enum"]):
        yield f"{where}.enum", "must be a non-empty list"
    for key in COUNTS:
        value = node.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            yield f"{where}.{key}", "must be a non-negative integer"
    for key in BOUNDS:
        value = node.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"{where}.{key}", "must be a number"
    if "pattern" in node:
        yield from _check_pattern(node["pattern"], f"{where}.pattern")
    if "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or pointer(ref, root) is None:
            yield f"{where}.$ref", f"{ref!r} does not point into this schema"


def _check_pattern(pattern: Any, where: str) -> Iterator[Problem]:
    if not isinstance(pattern, str):
        yield where, "must be a regular expression"
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        yield where, f"invalid regular expression: {exc}"
