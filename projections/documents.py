"""The generic document store: one jsonb document per id, written in batches.

Within one batch of events, writes are collected per id (a put, a shallow patch or a delete)
and sent to PostgreSQL as three set-based statements, so a rebuild does a handful of round
trips per thousand events instead of one per event. A rebuild's new documents go into its
fresh table by COPY instead (see `projections.fresh_table`). A live runner sends the three
together with its checkpoint, as one statement (`flush_if`).
"""

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from pipelines.database import encode_json, encode_json_bytes
from projections.fresh_table import FreshTable

Doc = dict[str, Any]
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_OFFSET = 2**62
MAX_PAGE = 1000  # documents one find() returns at most: a page, never a whole table
GUARDED = "EXISTS (SELECT FROM guard)"  # a write of `flush_if`: only if its guard applied


def field_sql(field: str) -> str:
    """`doc->>'field'`, for a field name that is safe to inline."""
    if not FIELD.match(field):
        raise ValueError(f"invalid document field name {field!r}")
    return f"(doc->>'{field}')"


def as_stored(value: Any) -> Any:
    """A copy of `value` as it reads back once stored: encoded as the store encodes it (times
    as RFC 3339 text, dataclasses as objects, enums as their values...)."""
    return orjson.loads(encode_json_bytes(value))


@dataclass(frozen=True)
class Write:
    """One write statement: SQL with `{0}`, `{1}`... where its arguments go and `{when}`, the
    condition it is made on; and its arguments."""

    sql: str
    args: tuple[Any, ...]

    def numbered(self, first: int, when: str) -> str:
        """The SQL, its arguments numbered from `first`, made on condition `when`."""
        places = (f"${first + i}" for i in range(len(self.args)))
        return self.sql.format(*places, when=when)


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
        """The document as it reads back once this batch is written."""
        if doc_id in self._puts:
            return as_stored(self._puts[doc_id])  # type: ignore[no-any-return]
        if doc_id in self._deletes:
            return None
        if self.after is not None:  # what it wrote is read back once it is written
            await self.after
        stored = await self.conn.fetchval(f'SELECT doc FROM "{self.table}" WHERE id = $1', doc_id)
        if stored is not None and doc_id in self._patches:
            stored.update(as_stored(self._patches[doc_id]))
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
        """Write the batch, a statement per kind of write (in the caller's transaction)."""
        await self._execute(self._deleting())
        if self._puts and not await self._copied():
            await self._execute(self._upserting())
        await self._execute(self._patching())
        self._clear()

    async def flush_if(self, guard: Write) -> bool:
        """Write the batch and run `guard` in one statement, no transaction needed; whether
        the guard (a data-modifying statement that returns a row when it applies) applied.
        If it did not, nothing of the batch is written.

        Its puts, patches and deletes touch disjoint ids (a later write of an id replaces
        the earlier one), as one statement must never modify a row twice.
        """
        parts, args = [f"guard AS ({guard.numbered(1, 'true')})"], list(guard.args)
        writes = (self._deleting(), self._upserting(), self._patching())
        for name, write in zip(("deleted", "put", "patched"), writes, strict=True):
            if write is not None:
                parts.append(f"{name} AS ({write.numbered(len(args) + 1, GUARDED)})")
                args += write.args
        self._clear()
        applied = await self.conn.fetchval(
            f"WITH {', '.join(parts)} SELECT count(*) FROM guard", *args
        )
        return bool(applied)

    def _deleting(self) -> Write | None:
        if not self._deletes:
            return None
        return Write(
            f'DELETE FROM "{self.table}" WHERE id = ANY({{0}}::text[]) AND {{when}}',
            (list(self._deletes),),
        )

    def _upserting(self) -> Write | None:
        return _per_document(
            f'INSERT INTO "{self.table}" (id, doc) SELECT id, doc::jsonb '
            "FROM unnest({0}::text[], {1}::text[]) AS p(id, doc) WHERE {when} "
            "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = now()",
            self._puts,
        )

    def _patching(self) -> Write | None:
        return _per_document(
            f'UPDATE "{self.table}" AS t SET doc = t.doc || p.changes::jsonb, '
            "updated_at = now() FROM unnest({0}::text[], {1}::text[]) AS p(id, changes) "
            "WHERE t.id = p.id AND {when}",
            self._patches,
        )

    async def _execute(self, write: Write | None) -> None:
        if write is not None:
            await self.conn.execute(write.numbered(1, "true"), *write.args)

    def _clear(self) -> None:
        self._puts, self._patches, self._deletes = {}, {}, set()

    async def _copied(self) -> bool:
        """Whether the puts went into a rebuild's table by COPY (they are upserted if not)."""
        return self.fresh is not None and await self.fresh.copy(self.conn, self.table, self._puts)


def _per_document(sql: str, docs: dict[str, Doc]) -> Write | None:
    """`sql` over the ids (`{0}`) and JSON texts (`{1}`) of `docs`; None if there are none."""
    return Write(sql, (list(docs), _json_texts(docs.values()))) if docs else None


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
