"""A projection's row in `projection_positions`, and its tables' generations."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from projections.projection import Projection

POSITIONS_CHANNEL = "projections"  # NOTIFY payload: "{name}:{position}"


@dataclass(frozen=True)
class ProjectionState:
    name: str
    position: int
    generation: int
    state: str
    error: str | None
    error_position: int | None
    updated_at: datetime


async def load(conn: asyncpg.Connection, name: str, *, lock: bool = False) -> ProjectionState:
    row = await conn.fetchrow(
        "SELECT name, position, generation, state, error, error_position, updated_at "
        f"FROM projection_positions WHERE name = $1{' FOR UPDATE' if lock else ''}",
        name,
    )
    if row is None:
        raise LookupError(f"projection {name!r} has never run")
    return ProjectionState(*row.values())


async def ensure(conn: asyncpg.Connection, projection: Projection) -> ProjectionState:
    """Create the projection's row, tables and view on first run."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO projection_positions (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        state = await load(conn, projection.name, lock=True)
        for statement in projection.ddl(state.generation):
            await conn.execute(statement)
        await point_view(conn, projection, state.generation)
    return state


async def point_view(conn: asyncpg.Connection, projection: Projection, generation: int) -> None:
    await conn.execute(
        f'CREATE OR REPLACE VIEW "{projection.name}" AS '
        f'SELECT * FROM "{projection.table(generation)}"'
    )


async def advance(conn: asyncpg.Connection, name: str, position: int) -> None:
    await conn.execute(
        "UPDATE projection_positions SET position = $2, updated_at = now(), state = 'running', "
        "error = NULL, error_position = NULL WHERE name = $1",
        name,
        position,
    )


async def announce(conn: asyncpg.Connection, name: str, position: int, schema: str) -> None:
    """Tell read-your-writes waiters; sent after the cache was invalidated, not at commit."""
    await conn.execute(
        "SELECT pg_notify($1, $2)", f"{schema}.{POSITIONS_CHANNEL}", f"{name}:{position}"
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
    """Move a failed projection past the event it failed on; returns that event's position."""
    async with conn.transaction():
        state = await load(conn, name, lock=True)
        if state.state != "failed" or state.error_position is None:
            raise ValueError(f"projection {name!r} is not stopped on an error")
        await conn.execute(
            "UPDATE projection_positions SET position = $2, state = 'running', error = NULL, "
            "error_position = NULL, updated_at = now() WHERE name = $1",
            name,
            state.error_position,
        )
        return state.error_position
