"""A rebuild's fresh table: its new documents go in by binary COPY instead of an upsert.

Only the rebuild writes the new generation's table, so a document it puts is new unless the
projection put it in an earlier batch. COPY takes about a third less of PostgreSQL's time
than `INSERT ... ON CONFLICT` over `unnest`, and its rows need no escaping in binary format.
The first put that meets a document already there (a projection that replaces its documents,
or a rebuild resumed) undoes only its own COPY; from then on that rebuild upserts.
"""

import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg

from pipelines.database import encode_json_bytes

Doc = dict[str, object]
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # signature, flags, no extension
TRAILER = struct.pack("!h", -1)
ID_FIELD = struct.Struct("!hi")  # two fields in the row, then the id's length
DOC_FIELD = struct.Struct("!ib")  # the doc's length, then jsonb's binary version (1)
CHUNK = 64 * 1024  # bytes per COPY message: below glibc's mmap threshold (128 KiB)


@dataclass(slots=True)
class FreshTable:
    """Whether a rebuild still copies its puts in (it stops at the first conflict)."""

    copying: bool = True

    async def copy(self, conn: asyncpg.Connection, table: str, puts: dict[str, Doc]) -> bool:
        """COPY `puts` into `table`; False (and nothing written) if one was there already."""
        if not self.copying:
            return False
        try:
            async with conn.transaction():  # a savepoint: a conflict undoes only this COPY
                await conn.copy_to_table(
                    table, source=_chunks(puts), columns=["id", "doc"],
                    format="binary",
                )  # fmt: skip
        except asyncpg.UniqueViolationError:
            self.copying = False
            return False
        return True


def binary_rows(docs: dict[str, Doc]) -> Iterator[bytearray]:
    """`(id, doc)` rows in COPY's binary format (text as UTF-8, jsonb as version 1 + text), in
    chunks of about CHUNK bytes.

    Memory is reused, not taken afresh: a batch's buffers above glibc's mmap threshold (its
    whole COPY at once, or each document's JSON kept until the end) came from fresh pages
    that were handed back after the batch, and each batch paid page faults for them again.
    """
    rows = bytearray(HEADER)
    for doc_id, doc in docs.items():
        key, body = doc_id.encode(), encode_json_bytes(doc)
        rows += ID_FIELD.pack(2, len(key))
        rows += key
        rows += DOC_FIELD.pack(len(body) + 1, 1)
        rows += body
        if len(rows) >= CHUNK:
            yield rows
            rows = bytearray()
    rows += TRAILER
    yield rows


async def _chunks(docs: dict[str, Doc]) -> AsyncIterator[bytearray]:
    """The rows as an async iterable: asyncpg reads a file-like source in a thread."""
    for chunk in binary_rows(docs):
        yield chunk
