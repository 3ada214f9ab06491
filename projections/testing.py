"""A document projection in memory, for the test kit (`pipelines.testing.TestKit`).

Its handlers write to it as to `Documents` (put, patch, delete) and query handlers read it as
a `DocumentReader` (get, find), with the same matching and order as the SQL they stand for:
fields compared as text, missing ones sorting last (first when descending), then by id.
"""

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipelines.eventstore import RecordedEvent
from projections.documents import (
    MAX_OFFSET,
    Doc,
    DocumentReader,
    as_stored,
    field_sql,
    page_size,
)

if TYPE_CHECKING:
    from projections.projection import Projection


class InMemoryUnsupported(Exception):
    """A projection the test kit cannot keep in memory (one with SQL tables of its own)."""


class MemoryDocuments(DocumentReader):
    def __init__(self, projection: "Projection") -> None:
        if projection.schema is not None:
            raise InMemoryUnsupported(
                f"projection {projection.name} keeps SQL tables of its own, which the test kit "
                "cannot fold in memory: test it against PostgreSQL (the banyan pytest plugin)"
            )
        self.projection = projection
        self.docs: dict[str, Doc] = {}

    async def apply(self, events: Sequence[RecordedEvent]) -> None:
        """Fold `events` as the projection's runner does."""
        await self.projection.fold(self, events)

    async def get(self, doc_id: str) -> Doc | None:
        doc = self.docs.get(doc_id)
        return as_stored(doc) if doc is not None else None  # a copy, as read

    def put(self, doc_id: str, doc: Doc) -> None:
        self.docs[doc_id] = as_stored(doc)

    def patch(self, doc_id: str, changes: Doc) -> None:
        if doc_id in self.docs:
            self.docs[doc_id].update(as_stored(changes))

    def delete(self, doc_id: str) -> None:
        self.docs.pop(doc_id, None)

    async def flush(self) -> None:
        return None

    async def find(
        self,
        where: dict[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Doc], int]:
        wanted = {f: str(v) for f, v in (where or {}).items() if v is not None}
        for field in [*wanted, *([order_by] if order_by else [])]:
            field_sql(field)  # the same refusal of a bad field name
        found = [
            (doc_id, doc)
            for doc_id, doc in sorted(self.docs.items())
            if all(_text(doc.get(f)) == value for f, value in wanted.items())
        ]
        if order_by is not None:  # a stable sort: ties stay in id order, reversed or not
            found.sort(key=lambda item: _sort_key(_text(item[1].get(order_by))), reverse=descending)
        start = min(int(offset), MAX_OFFSET)
        page = [as_stored(doc) for _, doc in found[start : start + page_size(limit)]]
        return page, len(found)


def _text(value: Any) -> str | None:
    """A field as `doc->>'field'` reads it."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _sort_key(text: str | None) -> tuple[bool, str]:
    return (text is None, text or "")
