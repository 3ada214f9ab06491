"""Python classes for another service's contracts, written from the registry's JSON Schemas
(`banyan contracts pull SERVICE`): a consumer imports them instead of copying classes by hand.

Types come from the schemas; constraints (lengths, ranges) do not, as the producer checks them
and contracts read tolerantly. Field names are the snake_case of the wire's camelCase.
"""

import re
from collections.abc import Iterable
from typing import Any

from pydantic.alias_generators import to_camel, to_snake

from pipelines.registry import ContractInfo

HEADER = '''"""Contracts of the {service} service {version}, written from the registry by
`banyan contracts pull {service}`: pull again rather than edit."""

from __future__ import annotations
'''
# what the classes may use, and the import that gives it
IMPORTS = {
    "Decimal": "from decimal import Decimal",
    "Any": "from typing import Any",
    "Literal": "from typing import Literal",
    "Field": "from pydantic import Field",
}
BASES = {"command": "Command", "query": "Query", "event": "Event"}
SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def contracts_module(service: str, version: str, contracts: Iterable[ContractInfo]) -> str:
    """The source of a module defining `contracts` and every model they use."""
    writer = _Writer(service)
    for contract in sorted(contracts, key=lambda c: c.message_type):
        writer.add(contract)
    body = "".join(writer.classes)
    used = {name: line for name, line in IMPORTS.items() if re.search(rf"\b{name}\b", body)}
    standard = [line for name, line in used.items() if name != "Field"]
    bases = sorted(name for name in ("Command", "Event", "Model", "Query") if f"({name}" in body)
    groups = [
        standard,
        [used["Field"]] if "Field" in used else [],
        [f"from pipelines import {', '.join(bases)}"],
    ]
    imports = "\n\n".join("\n".join(group) for group in groups if group)
    return f"{HEADER.format(service=service, version=version)}\n{imports}\n{body}"


class _Writer:
    def __init__(self, service: str) -> None:
        self.service = service
        self.classes: list[str] = []
        self._written: set[str] = set()

    def add(self, contract: ContractInfo) -> None:
        schema = contract.input_schema
        self._definitions(schema)
        base = BASES[contract.kind] + _options(contract, self.service)
        self._class(contract.message_type, schema, base)
        output = contract.output_schema or {}
        if output.get("type") == "object" and "title" in output:
            self._definitions(output)
            self._class(output["title"], output, "Model")

    def _definitions(self, schema: dict[str, Any]) -> None:
        for name, definition in schema.get("$defs", {}).items():
            if definition.get("type") == "object":
                self._class(name, definition, "Model")

    def _class(self, name: str, schema: dict[str, Any], base: str) -> None:
        if name in self._written:
            return
        self._written.add(name)
        lines = [f"\n\nclass {name}({base}):"]
        if description := schema.get("description"):
            lines.append(f"    {_docstring(description)}")
        required = set(schema.get("required", ()))
        for wire, field in schema.get("properties", {}).items():
            lines.append(f"    {_field(wire, field, wire in required)}")
        if len(lines) == 1:
            lines.append("    pass")
        self.classes.append("\n".join(lines) + "\n")


def _options(contract: ContractInfo, service: str) -> str:
    """The class options a consumer's copy needs: who records an event (its audience is the
    producer's business), what a command or query requires."""
    if contract.kind == "event":
        return f", service={service!r}"
    if contract.required_permissions:
        return f", permissions={contract.required_permissions!r}"
    return ""


def _field(wire: str, schema: dict[str, Any], required: bool) -> str:
    name, annotation = to_snake(wire), python_type(schema)
    default = "..." if required else _default(schema)
    if to_camel(name) != wire:  # a wire name the usual rule does not give back
        return f"{name}: {annotation} = Field({default}, alias={wire!r})"
    if required:
        return f"{name}: {annotation}"
    return f"{name}: {annotation} = " + (f"Field({default})" if "=" in default else default)


def _default(schema: dict[str, Any]) -> str:
    """An optional field's default, as Field's first argument: the schema's, else an empty
    list or map (a default factory leaves none in the schema), else None."""
    if "default" in schema:
        return repr(schema["default"])
    factory = {"array": "list", "object": "dict"}.get(str(schema.get("type")))
    return f"default_factory={factory}" if factory else "None"


def python_type(schema: dict[str, Any]) -> str:
    """The annotation of a JSON Schema as pydantic writes them for contracts."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return f"Literal[{', '.join(repr(value) for value in schema['enum'])}]"
    if "anyOf" in schema:
        kinds = [option.get("type") for option in schema["anyOf"]]
        if {"number", "string"} <= set(kinds):  # a Decimal: a number, or its text
            rest = [o for o in schema["anyOf"] if o.get("type") not in ("number", "string")]
            return " | ".join(["Decimal", *(python_type(o) for o in rest)])
        return " | ".join(dict.fromkeys(python_type(option) for option in schema["anyOf"]))
    kind = schema.get("type")
    if kind == "array":
        return f"list[{python_type(schema.get('items', {}))}]"
    if kind == "object":
        return f"dict[str, {python_type(schema.get('additionalProperties') or {})}]"
    return SCALARS.get(str(kind), "Any")


def _docstring(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return '"""' + escaped.replace("\n", "\n    ") + '"""'
