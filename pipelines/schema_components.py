"""JSON Schemas of contracts as named components of an OpenAPI or AsyncAPI document.

Pydantic puts nested models under each schema's own `$defs`; a document wants each model
once, under `#/components/schemas/`, named after its title (generated clients name their
classes after them). A model another service shapes differently is prefixed with its service.
"""

import json
from typing import Any

REFS = "#/components/schemas/"


class Components:
    """The schemas of one document, filled as its operations are described."""

    def __init__(self, **given: Any) -> None:
        self.schemas: dict[str, Any] = dict(given)

    def placed(self, schema: dict[str, Any], service: str) -> dict[str, Any]:
        """`schema` with its `$defs` moved here and its references pointed here."""
        schema = dict(schema)
        definitions: dict[str, Any] = schema.pop("$defs", {})
        names = {name: name for name in definitions}
        for name, definition in definitions.items():
            if not self._fits(name, _pointed(definition, names)):
                names[name] = _prefixed(service, name)
        for name, definition in definitions.items():
            self.schemas[names[name]] = _pointed(definition, names)
        return _pointed(schema, names)

    def reference(self, schema: dict[str, Any], service: str) -> dict[str, Any]:
        """A reference to `schema` (already placed) as a component of its own."""
        title = str(schema.get("title") or "")
        if not title:
            return schema
        name = title if self._fits(title, schema) else _prefixed(service, title)
        self.schemas[name] = schema
        return {"$ref": REFS + name}

    def _fits(self, name: str, schema: dict[str, Any]) -> bool:
        return bool(self.schemas.get(name, schema) == schema)


def _prefixed(service: str, name: str) -> str:
    return f"{service.title().replace('-', '')}{name}"


def _pointed(schema: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(schema)
    for name, placed in names.items():
        text = text.replace(f'"#/$defs/{name}"', f'"{REFS}{placed}"')
    pointed: dict[str, Any] = json.loads(text)
    return pointed
