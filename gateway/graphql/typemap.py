"""GraphQL type definitions (SDL) generated from the contracts' JSON Schemas.

| JSON Schema (as pydantic writes it)                 | GraphQL                               |
| --------------------------------------------------- | ------------------------------------- |
| object with properties, inline or `$ref` to `$defs` | object type; input type `...Input`    |
| string `enum` (an Enum or a Literal)                | enum (String if a value is no name)   |
| array                                               | list                                  |
| `anyOf` with `{"type": "null"}`                     | the other branch, nullable            |
| `anyOf` number / string (pydantic's Decimal)        | `Decimal`: a string, exact            |
| string / integer / number / boolean                 | String / Int / Float / Boolean        |
| anything else (free-form objects, unions, Any)      | `JSON`                                |

A field is non-null when it is required and not nullable. Properties whose names are not
GraphQL names are left out. Types are named after their models; a different model with a name
already taken gets a numeric suffix.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from graphql.language.print_string import print_string

Mode = Literal["input", "output"]
Schema = dict[str, Any]
SCALARS = {"string": "String", "integer": "Int", "number": "Float", "boolean": "Boolean"}
BUILT_IN = {"String", "Int", "Float", "Boolean", "ID", "JSON", "Decimal", "Long"}
ROOTS = {"Query", "Mutation", "Subscription"}
NOT_ENUM_VALUES = {"true", "false", "null"}
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


def is_name(name: str) -> bool:
    return bool(_NAME.match(name)) and not name.startswith("__")


def pascal(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", text))


def description(text: str | None, indent: str = "") -> str:
    return f"{indent}{print_string(text)}\n" if text else ""


@dataclass(frozen=True)
class Ref:
    """A GraphQL type reference (without its non-null mark) and whether it may be null."""

    type: str
    nullable: bool = False

    def field(self, required: bool) -> str:
        return self.type if self.nullable or not required else f"{self.type}!"


class TypeMap:
    """The named types the mapped schemas need, by name, in SDL."""

    def __init__(self) -> None:
        self.definitions: dict[str, str] = {}
        self.enums: set[str] = set()
        self._names: dict[str, str] = {}  # what a type is made from -> its name

    def ref(self, node: Schema, root: Schema, hint: str, mode: Mode) -> Ref:
        """The GraphQL type of a JSON Schema node (`root` holds the `$defs`)."""
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            return self.ref(root.get("$defs", {}).get(name, {}), root, name, mode)
        if len(node.get("allOf", ())) == 1:
            return self.ref(node["allOf"][0], root, hint, mode)
        branches = _branches(node)
        if branches is not None:
            return self._union(branches, root, hint, mode)
        if "enum" in node:
            return Ref(self._enum(node, hint))
        kind = node.get("type")
        if kind == "array":
            item = self.ref(node.get("items", {}), root, hint, mode)
            return Ref(f"[{item.field(required=True)}]")
        if kind == "object":
            return Ref(self._object(node, root, hint, mode) or "JSON")
        return Ref(SCALARS.get(str(kind), "JSON"))

    def define(self, base: str, made_from: str, render: Callable[[str], str]) -> str:
        """The name of the type made from `made_from`, rendering its SDL the first time."""
        if made_from in self._names:
            return self._names[made_from]
        base = base if is_name(base) else f"T{base}"  # a title starting with a digit
        name, suffix = base, 2
        while name in self.definitions or name in BUILT_IN or name in ROOTS:
            name, suffix = f"{base}{suffix}", suffix + 1
        self._names[made_from] = name
        self.definitions[name] = ""  # taken before rendering: a model may contain itself
        self.definitions[name] = render(name)
        return name

    def is_leaf(self, type_name: str) -> bool:
        """Scalars and enums: what an equality filter can compare."""
        return type_name in SCALARS.values() or type_name == "Decimal" or type_name in self.enums

    def _union(self, branches: list[Schema], root: Schema, hint: str, mode: Mode) -> Ref:
        present = [b for b in branches if b.get("type") != "null"]
        nullable = len(present) < len(branches)
        if len(present) == 1:
            inner = self.ref(present[0], root, hint, mode)
            return Ref(inner.type, nullable or inner.nullable)
        if {b.get("type") for b in present} == {"number", "string"}:
            return Ref("Decimal", nullable)
        return Ref("JSON", nullable)

    def _enum(self, node: Schema, hint: str) -> str:
        values = node["enum"]
        if not all(isinstance(v, str) and is_name(v) and v not in NOT_ENUM_VALUES for v in values):
            return SCALARS.get(str(node.get("type")), "JSON")
        base = pascal(node.get("title") or hint)

        def render(name: str) -> str:
            lines = "".join(f"  {value}\n" for value in values)
            return f"{description(node.get('description'))}enum {name} {{\n{lines}}}"

        name = self.define(base, json.dumps(["enum", base, values]), render)
        self.enums.add(name)
        return name

    def properties(self, node: Schema, root: Schema, owner: str, mode: Mode) -> dict[str, Ref]:
        """The types of an object's properties (`owner` names the inline types among them)."""
        return {
            name: self.ref(schema, root, owner + pascal(name), mode)
            for name, schema in node.get("properties", {}).items()
            if is_name(name)
        }

    def _object(self, node: Schema, root: Schema, hint: str, mode: Mode) -> str | None:
        if not any(is_name(p) for p in node.get("properties", {})):
            return None
        owner = pascal(node.get("title") or hint)  # inline types inside are named after it
        base = owner + ("Input" if mode == "input" else "")
        required = set(node.get("required", ()))
        notes = {n: s.get("description") for n, s in node.get("properties", {}).items()}

        def render(name: str) -> str:
            fields = "".join(
                f"{description(notes[prop], '  ')}  {prop}: {ref.field(prop in required)}\n"
                for prop, ref in self.properties(node, root, owner, mode).items()
            )
            keyword = "input" if mode == "input" else "type"
            return f"{description(node.get('description'))}{keyword} {name} {{\n{fields}}}"

        shape = {k: v for k, v in node.items() if k != "$defs"}
        made_from = json.dumps([mode, base, shape, _referenced(shape, root)], sort_keys=True)
        return self.define(base, made_from, render)


def _branches(node: Schema) -> list[Schema] | None:
    if "anyOf" in node or "oneOf" in node:
        return list(node.get("anyOf") or node.get("oneOf") or [])
    if isinstance(node.get("type"), list):
        return [{**node, "type": kind} for kind in node["type"]]
    return None


def _referenced(node: Any, root: Schema, seen: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `$defs` a node refers to, directly or not: part of what its type is made from."""
    seen = {} if seen is None else seen
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen[name] = root.get("$defs", {}).get(name, {})
                _referenced(seen[name], root, seen)
        for value in node.values():
            _referenced(value, root, seen)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, root, seen)
    return seen
