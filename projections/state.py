"""A projection's row in `projection_positions`, and its tables' generations."""

import contextlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pipelines.positions import positions_channel
from pipelines.settings import Settings
from projections.documents import Write
from projections.projection import Projection


@dataclass(frozen=True)
class ProjectionState:
    name: str
    position: int
    generation: int
    state: str
    error: str | None
    error_position: int | None
    updated_at: datetime
    skipped: list[int]  # positions skipped by hand (`skip`): rebuilds skip them too


async def load(conn: asyncpg.Connection, name: str, *, lock: bool = False) -> ProjectionState:
    row = await conn.fetchrow(
        "SELECT name, position, generation, state, error, error_position, updated_at, skipped "
        f"FROM projection_positions WHERE name = $1{' FOR UPDATE' if lock else ''}",
        name,
    )
    if row is None:
        raise LookupError(f"projection {name!r} has never run")
    return ProjectionState(*row.values())


class GenerationMoved(Exception):
    """A rebuild swapped generations while `ensure` created the tables of the old one."""


async def ensure(conn: asyncpg.Connection, projection: Projection) -> ProjectionState:
    """Create the projection's row, tables and view on first run."""
    while True:
        with contextlib.suppress(GenerationMoved):
            async with conn.transaction():
                return await _create(conn, projection)


async def _create(conn: asyncpg.Connection, projection: Projection) -> ProjectionState:
    # Tables first, then the row lock: the order a live runner takes them in (its batch, then
    # its checkpoint); the other order deadlocks with it.
    await conn.execute(
        "INSERT INTO projection_positions (name) VALUES ($1) ON CONFLICT DO NOTHING",
        projection.name,
    )
    generation = (await load(conn, projection.name)).generation
    for statement in projection.ddl(generation):
        await conn.execute(statement)
    state = await load(conn, projection.name, lock=True)
    if state.generation != generation:
        raise GenerationMoved
    await point_view(conn, projection, generation)
    return state


async def point_view(conn: asyncpg.Connection, projection: Projection, generation: int) -> None:
    await conn.execute(
        f'CREATE OR REPLACE VIEW "{projection.name}" AS '
        f'SELECT * FROM "{projection.table(generation)}"'
    )


ADVANCE = (
    "UPDATE projection_positions SET position = {3}, updated_at = now(), state = 'running', "
    "error = NULL, error_position = NULL WHERE name = {0} AND position = {1} AND generation = {2}"
)


async def advance(
    conn: asyncpg.Connection, name: str, expected: tuple[int, int], position: int
) -> bool:
    """Move the checkpoint on from `expected` (position, generation), in the caller's transaction.

    False, with nothing changed, if a rebuild or a skip moved it first. A swap holds the row
    lock until it commits, and this re-checks the row once the lock is free.
    """
    move = advancing(name, expected, position)
    status = await conn.execute(move.numbered(1, "true"), *move.args)
    return bool(status == "UPDATE 1")


def advancing(name: str, expected: tuple[int, int], position: int) -> Write:
    """`advance` as a statement that returns a row if it moved the checkpoint: the guard of a
    document projection's batch (`Documents.flush_if`)."""
    return Write(f"{ADVANCE} RETURNING 1", (name, *expected, position))


async def announce(conn: asyncpg.Connection, name: str, position: int, settings: Settings) -> None:
    """Tell read-your-writes waiters; sent after the cache was invalidated, not at commit."""
    await conn.execute(
        "SELECT pg_notify($1, $2)", positions_channel(settings), f"{name}:{position}"
    )


async def fail(conn: asyncpg.Connection, name: str, position: int, error: str) -> None:
    await conn.execute(
        "UPDATE projection_positions SET state = 'failed', error = $2, error_position = $3, "
        "updated_at = now() WHERE name = $1",
        name,
        error[:2000],
        position,
    )


async def skip(conn: asyncpg.Connection, name: str) -> int:
    """Move a failed projection past the event it failed on, for good (rebuilds skip it too);
    returns that event's position."""
    async with conn.transaction():
        state = await load(conn, name, lock=True)
        if state.state != "failed" or state.error_position is None:
            raise ValueError(f"projection {name!r} is not stopped on an error")
        await conn.execute(
            "UPDATE projection_positions SET position = $2, state = 'running', error = NULL, "
            "error_position = NULL, skipped = array_append(skipped, $2::bigint), "
            "updated_at = now() WHERE name = $1",
            name,
            state.error_position,
        )
        return state.error_position
