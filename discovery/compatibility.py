"""Would a new version of a service's contracts break the callers of the old one?

Callers write inputs (commands, queries) and read outputs and event payloads. Breaking:
- a contract removed, or its kind changed;
- a field removed (contracts reject unknown fields, so callers still sending it would fail);
- inputs: a required field added, an optional field made required, or a type that accepts
  less than before (`string|null` -> `string`, an enum losing a value);
- outputs and events: a field no longer always present, or a type that may carry more than
  before (`string` -> `string|null`), which readers never had to handle.
A type change in neither direction's favour (`integer` -> `string`) breaks both.

Events also stay readable from the log, whatever the major version: the new class must read
the payloads already stored (no field it requires missing, no type it accepts narrowed),
unless the event's version is raised and upcasters lead from the previous registered version
to the new one. Under the same major version the old version's readers, still running in a
rolling deploy, must read the new payloads too, raised version or not. A version without that
chain of upcasters breaks too, as does one that drops an upcaster its predecessor had (the
events of that version are still in the log).
"""

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from discovery.schemas import JSON_TYPES, MAX_DEPTH, resolve
from pipelines.registry import ContractInfo

Values = frozenset[str] | None  # the only values allowed (canonical JSON); None: any
Shape = dict[str, Values]  # the JSON types a schema allows -> their allowed values
ANY: Shape = dict.fromkeys(JSON_TYPES)

DESCRIPTIONS = {
    "contract-removed": "contract removed",
    "kind-changed": "kind changed from {old} to {new}",
    "output-removed": "result schema removed",
    "field-removed": "{field} removed",
    "required-field-added": "required {field} added",
    "field-became-required": "{field} became required",
    "field-no-longer-required": "{field} is no longer always present",
    "type-changed": "{field} changed type from {old} to {new}",
    "version-not-bumped": "changed at version {old} so that the stored events cannot be read; "
    "raise its version and declare @upcaster({contract}, {old})",
    "upcaster-missing": "version {new} cannot read the stored events of version {old}: "
    "declare @upcaster({contract}, {old})",
}


@dataclass(frozen=True)
class BreakingChange:
    contract: str
    schema: str  # "input" or "output"; "" for the contract as a whole
    path: str  # the field, e.g. "items[].unitPrice"; "" for the whole schema
    change: str  # a key of DESCRIPTIONS
    old: str | None = None
    new: str | None = None

    def describe(self) -> str:
        field = f"field {self.path!r}" if self.path else "the schema"
        text = DESCRIPTIONS[self.change].format(
            field=field, old=self.old, new=self.new, contract=self.contract
        )
        return f"{' '.join(filter(None, (self.contract, self.schema)))}: {text}"

    def detail(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v} | {"message": self.describe()}


def breaking_changes(
    old: Mapping[str, ContractInfo], new: Mapping[str, ContractInfo]
) -> list[BreakingChange]:
    """What in `new` breaks callers of `old` (contracts by message type)."""
    return [change for name in sorted(old) for change in _contract(old[name], new.get(name))]


def log_breaking_changes(
    old: Mapping[str, ContractInfo], new: Mapping[str, ContractInfo]
) -> list[BreakingChange]:
    """What in `new` leaves events already in the log unreadable (checked across majors too)."""
    return [
        change
        for name, before in sorted(old.items())
        if before.kind == "event" and (after := new.get(name)) is not None and after.kind == "event"
        for change in _event(before, after, readers=False)
    ]


def _contract(before: ContractInfo, after: ContractInfo | None) -> Iterator[BreakingChange]:
    name = before.message_type
    if after is None:
        yield BreakingChange(name, "", "", "contract-removed")
    elif after.kind != before.kind:
        yield BreakingChange(name, "", "", "kind-changed", before.kind, after.kind)
    else:
        if before.kind == "event":
            yield from _event(before, after, readers=True)
        else:
            yield from SchemaDiff(name, "input", before.input_schema, after.input_schema, False)
        if before.output_schema is not None and after.output_schema is None:
            yield BreakingChange(name, "output", "", "output-removed")
        elif before.output_schema is not None and after.output_schema is not None:
            yield from SchemaDiff(name, "output", before.output_schema, after.output_schema, True)


def _event(before: ContractInfo, after: ContractInfo, readers: bool) -> Iterator[BreakingChange]:
    """An event stays readable from the log (the new class reads the stored payloads) and, with
    `readers`, by the readers of the old version (they read new payloads); a raised version
    with upcasters from the old one carries the stored payloads over."""
    name, old, new = before.message_type, before.schema_version, after.schema_version
    yield from _missing_upcasters(before, after)
    schemas = before.input_schema, after.input_schema
    if new > old:  # the stored payloads are upcast; the old version's readers still read
        if readers:  # the new ones (tolerant: a field added is fine, a type changed is not)
            yield from SchemaDiff(name, "input", *schemas, True)
        return
    diffs = [*SchemaDiff(name, "input", *schemas, False)]
    if readers:
        diffs += SchemaDiff(name, "input", *schemas, True)
    changes = list(dict.fromkeys(diffs))  # a change both ways is named once
    yield from changes
    if changes:
        yield BreakingChange(name, "", "", "version-not-bumped", str(old))


def _missing_upcasters(before: ContractInfo, after: ContractInfo) -> Iterator[BreakingChange]:
    """Every version the old class read (its own, those it upcast) the new one must still
    read: each step from the oldest of them up to the new version needs its upcaster."""
    oldest = min([before.schema_version, *before.upcasts_from])
    upcasts = set(after.upcasts_from)  # versions are bounded at registration
    for step in range(oldest, after.schema_version):
        if step not in upcasts:
            new = str(after.schema_version)
            yield BreakingChange(before.message_type, "", "", "upcaster-missing", str(step), new)


class SchemaDiff:
    """The breaking changes between two versions of one schema, field by field."""

    def __init__(self, contract: str, schema: str, old: Any, new: Any, reads: bool) -> None:
        self.contract, self.schema, self.reads = contract, schema, reads
        self.old_root, self.new_root = old, new
        self._seen: set[tuple[int, int]] = set()  # recursive schemas: compare each pair once

    def __iter__(self) -> Iterator[BreakingChange]:
        return self._node(self.old_root, self.new_root, "")

    def _node(self, old: Any, new: Any, path: str) -> Iterator[BreakingChange]:
        old, new = resolve(old, self.old_root), resolve(new, self.new_root)
        if (id(old), id(new)) in self._seen:
            return
        self._seen.add((id(old), id(new)))
        before, after = shape(old, self.old_root), shape(new, self.new_root)
        # writers' old values must still be accepted; readers must understand new values
        accepting, offered = (before, after) if self.reads else (after, before)
        if not accepts(accepting, offered):
            yield self._change(path, "type-changed", label(before), label(after))
            return
        yield from self._fields(old, new, path)
        before_list = _branch(old, self.old_root, _is_array)
        after_list = _branch(new, self.new_root, _is_array)
        if before_list is not None and after_list is not None:
            items = before_list.get("items", {}), after_list.get("items", {})
            yield from self._node(*items, path + "[]")

    def _fields(self, old: Any, new: Any, path: str) -> Iterator[BreakingChange]:
        before = _branch(old, self.old_root, _is_object)
        after = _branch(new, self.new_root, _is_object)
        if before is None or after is None:
            return
        old_props, new_props = before.get("properties", {}), after.get("properties", {})
        for name, schema in old_props.items():
            if name not in new_props:
                yield self._change(_join(path, name), "field-removed")
            else:
                yield from self._node(schema, new_props[name], _join(path, name))
        old_extra, new_extra = before.get("additionalProperties"), after.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            yield from self._node(old_extra, new_extra, _join(path, "*"))
        yield from self._required(before, after, old_props, new_props, path)

    def _required(
        self,
        before: dict[str, Any],
        after: dict[str, Any],
        old_props: Any,
        new_props: Any,
        path: str,
    ) -> Iterator[BreakingChange]:
        old_required, new_required = set(before.get("required", ())), set(after.get("required", ()))
        if self.reads:
            for name in sorted(old_required - new_required):
                if name in new_props:
                    yield self._change(_join(path, name), "field-no-longer-required")
            return
        for name in sorted(new_required - old_required):
            change = "field-became-required" if name in old_props else "required-field-added"
            yield self._change(_join(path, name), change)

    def _change(
        self, path: str, change: str, old: str | None = None, new: str | None = None
    ) -> BreakingChange:
        return BreakingChange(self.contract, self.schema, path, change, old, new)


def shape(node: Any, root: Any, depth: int = 0) -> Shape:
    """The JSON types (and, where a schema lists them, the values) a schema allows."""
    node = resolve(node, root)
    if isinstance(node, bool):
        return dict(ANY) if node else {}
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return dict(ANY)
    if "const" in node:
        return _of_values([node["const"]])
    if "enum" in node:
        return _of_values(node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _union(shape(m, root, depth + 1) for m in node[key])
    if "allOf" in node:
        return _intersection([shape(m, root, depth + 1) for m in node["allOf"]])
    kinds = node.get("type")
    if kinds is None:
        return {"object": None} if "properties" in node else dict(ANY)
    return dict.fromkeys(kinds if isinstance(kinds, list) else [kinds])


def accepts(accepting: Shape, offered: Shape) -> bool:
    """Does a schema of shape `accepting` allow every value one of shape `offered` allows?"""
    return all(_allows(accepting, kind, values) for kind, values in offered.items())


def label(shape: Shape) -> str:
    if shape == ANY:
        return "any"
    parts = (kind if values is None else "|".join(sorted(values)) for kind, values in shape.items())
    return "|".join(sorted(parts)) or "nothing"


def _allows(accepting: Shape, kind: str, values: Values) -> bool:
    if kind in accepting and _covers(accepting[kind], values):
        return True
    return kind == "integer" and "number" in accepting and _covers(accepting["number"], values)


def _covers(allowed: Values, values: Values) -> bool:
    return allowed is None or (values is not None and values <= allowed)


def _of_values(values: Iterable[Any]) -> Shape:
    grouped: dict[str, set[str]] = {}
    for value in values:
        grouped.setdefault(_json_type(value), set()).add(json.dumps(value, sort_keys=True))
    return {kind: _bounded(kind, frozenset(found)) for kind, found in grouped.items()}


def _bounded(kind: str, values: frozenset[str]) -> Values:
    """None where the listed values are all the type has (null; both booleans)."""
    everything = {"null": frozenset({"null"}), "boolean": frozenset({"true", "false"})}
    return None if values == everything.get(kind) else values


def _union(shapes: Iterable[Shape]) -> Shape:
    merged: Shape = {}
    for one in shapes:
        for kind, values in one.items():
            known = merged.get(kind, frozenset())
            merged[kind] = None if known is None or values is None else known | values
    return merged


def _intersection(shapes: list[Shape]) -> Shape:
    common: Shape = shapes[0] if shapes else dict(ANY)
    for one in shapes[1:]:
        common = {k: _meet(v, one[k]) for k, v in common.items() if k in one}
    return common


def _meet(a: Values, b: Values) -> Values:
    if a is None or b is None:
        return b if a is None else a
    return a & b


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "any")


def _branch(
    node: Any, root: Any, wanted: Callable[[dict[str, Any]], bool], depth: int = 0
) -> dict[str, Any] | None:
    """The one part of `node` (itself, or one alternative of a union) that is `wanted`."""
    node = resolve(node, root)
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return None
    if wanted(node):
        return node
    for key in ("anyOf", "oneOf", "allOf"):
        members = (_branch(m, root, wanted, depth + 1) for m in node.get(key, ()))
        found = [m for m in members if m is not None]
        if len(found) == 1:
            return found[0]
    return None


def _is_object(node: dict[str, Any]) -> bool:
    return "properties" in node or _has_type(node, "object")


def _is_array(node: dict[str, Any]) -> bool:
    return "items" in node or _has_type(node, "array")


def _has_type(node: dict[str, Any], kind: str) -> bool:
    kinds = node.get("type")
    return kinds == kind or (isinstance(kinds, list) and kind in kinds)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
