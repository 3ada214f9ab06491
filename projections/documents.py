"""The generic document store: one jsonb document per id, written in batches.

Within one batch of events, writes are collected per id (a put, a shallow patch or a delete)
and sent to PostgreSQL as three set-based statements, so a rebuild does a handful of round
trips per thousand events instead of one per event. A rebuild's new documents go into its
fresh table by COPY instead (see `projections.fresh_table`).
"""

import asyncio
import re
from collections.abc import Iterable
from typing import Any

import asyncpg

from pipelines.database import encode_json
from projections.fresh_table import FreshTable

Doc = dict[str, Any]
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_OFFSET = 2**62
MAX_PAGE = 1000  # documents one find() returns at most: a page, never a whole table


def field_sql(field: str) -> str:
    """`doc->>'field'`, for a field name that is safe to inline."""
    if not FIELD.match(field):
        raise ValueError(f"invalid document field name {field!r}")
    return f"(doc->>'{field}')"


class Documents:
    """What a document projection's handlers write to, for one batch."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        table: str,
        fresh: FreshTable | None = None,
        after: asyncio.Future[Any] | None = None,
    ) -> None:
        self.conn = conn
        self.table = table
        self.fresh = fresh  # a rebuild's table: puts are copied in while they are new
        self.after = after  # the previous batch's write, still running on `conn`
        self._puts: dict[str, Doc] = {}
        self._patches: dict[str, Doc] = {}
        self._deletes: set[str] = set()

    async def get(self, doc_id: str) -> Doc | None:
        if doc_id in self._puts:
            return dict(self._puts[doc_id])
        if doc_id in self._deletes:
            return None
        if self.after is not None:  # what it wrote is read back once it is written
            await self.after
        stored = await self.conn.fetchval(f'SELECT doc FROM "{self.table}" WHERE id = $1', doc_id)
        if stored is not None and doc_id in self._patches:
            stored.update(self._patches[doc_id])
        return stored  # type: ignore[no-any-return]

    def put(self, doc_id: str, doc: Doc) -> None:
        """Create or replace the whole document."""
        self._puts[doc_id] = dict(doc)
        self._patches.pop(doc_id, None)
        self._deletes.discard(doc_id)

    def patch(self, doc_id: str, changes: Doc) -> None:
        """Set top-level fields of an existing document (no effect if there is none)."""
        if doc_id in self._puts:
            self._puts[doc_id].update(changes)
        elif doc_id not in self._deletes:
            self._patches.setdefault(doc_id, {}).update(changes)

    def delete(self, doc_id: str) -> None:
        self._puts.pop(doc_id, None)
        self._patches.pop(doc_id, None)
        self._deletes.add(doc_id)

    async def flush(self) -> None:
        table = f'"{self.table}"'
        if self._deletes:
            await self.conn.execute(
                f"DELETE FROM {table} WHERE id = ANY($1::text[])", list(self._deletes)
            )
        if self._puts and not await self._copied():
            await self.conn.execute(
                f"INSERT INTO {table} (id, doc) SELECT id, doc::jsonb "
                "FROM unnest($1::text[], $2::text[]) AS p(id, doc) "
                "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = now()",
                list(self._puts), _json_texts(self._puts.values()),
            )  # fmt: skip
        if self._patches:
            await self.conn.execute(
                f"UPDATE {table} AS t SET doc = t.doc || p.changes::jsonb, updated_at = now() "
                "FROM unnest($1::text[], $2::text[]) AS p(id, changes) WHERE t.id = p.id",
                list(self._patches), _json_texts(self._patches.values()),
            )  # fmt: skip
        self._puts, self._patches, self._deletes = {}, {}, set()

    async def _copied(self) -> bool:
        """Whether the puts went into a rebuild's table by COPY (they are upserted if not)."""
        return self.fresh is not None and await self.fresh.copy(self.conn, self.table, self._puts)


def _json_texts(docs: Iterable[Doc]) -> list[str]:
    """Documents as JSON text: PostgreSQL parses a text[] into jsonb about twice as fast as it
    receives a jsonb[] of the same documents."""
    return [encode_json(doc) for doc in docs]


def page_size(limit: int) -> int:
    """How many documents a `find` asked for `limit` returns at most."""
    return max(0, min(int(limit), MAX_PAGE))


class DocumentReader:
    """Reads a document projection's live documents (query handlers use this)."""

    def __init__(self, pool: asyncpg.Pool, view: str) -> None:
        self.pool = pool
        self.view = view

    async def get(self, doc_id: str) -> Doc | None:
        doc = await self.pool.fetchval(f'SELECT doc FROM "{self.view}" WHERE id = $1', doc_id)
        return doc  # type: ignore[no-any-return]

    async def find(
        self,
        where: dict[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Doc], int]:
        """Documents whose fields equal `where` (None values ignored), and how many match:
        a page of `limit` (20 by default, at most MAX_PAGE) from `offset`."""
        conditions, args = [], []
        for field, value in (where or {}).items():
            if value is not None:
                args.append(str(value))
                conditions.append(f"{field_sql(field)} = ${len(args)}")
        clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "ORDER BY id"
        if order_by is not None:
            order = f"ORDER BY {field_sql(order_by)} {'DESC' if descending else 'ASC'}, id"
        offset = min(int(offset), MAX_OFFSET)  # past any table: an empty page, not an error
        rows = await self.pool.fetch(
            f'SELECT doc, count(*) OVER () AS total FROM "{self.view}" {clause} '
            f"{order} OFFSET {offset} LIMIT {page_size(limit)}",
            *args,
        )
        total = rows[0]["total"] if rows else await self._count(clause, args)
        return [r["doc"] for r in rows], int(total)

    async def _count(self, clause: str, args: list[Any]) -> int:
        return int(await self.pool.fetchval(f'SELECT count(*) FROM "{self.view}" {clause}', *args))
