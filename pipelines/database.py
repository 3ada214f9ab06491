"""PostgreSQL connections and the versioned migrations the platform applies on start."""

import logging
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias, cast

import asyncpg
import orjson

from pipelines import timestamps
from pipelines.settings import Settings

log = logging.getLogger("banyan.database")

Pool: TypeAlias = asyncpg.Pool


def encode_json(value: Any) -> str:
    return value if isinstance(value, str) else encode_json_bytes(value).decode()


def encode_json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=encode_json, decoder=orjson.loads, schema="pg_catalog"
        )
    await timestamps.use_text(conn)


def connect_kwargs(settings: Settings, dsn: str | None = None) -> dict[str, Any]:
    return {
        "dsn": dsn or settings.database_url,
        "server_settings": {
            "search_path": settings.database_schema,
            **timestamps.SESSION,
            **stall_limits(settings),
        },
        "init": _init_connection,
    }


def stall_limits(settings: Settings) -> dict[str, str]:
    """Server settings that end a session whose client froze: idle inside a transaction (it
    would hold its appends' in-flight locks, and so every reader, back), or gone silent (TCP
    keepalives from the server)."""
    stall = max(1, int(settings.append_stall_timeout))
    return {
        "idle_in_transaction_session_timeout": str(stall * 1000),
        "tcp_keepalives_idle": str(max(1, stall // 2)),
        "tcp_keepalives_interval": str(max(1, stall // 6)),
        "tcp_keepalives_count": "3",
    }


async def create_pool(
    settings: Settings, size: int | None = None, *, dsn: str | None = None, min_size: int = 2
) -> Pool:
    """A pool on `DATABASE_URL` (or `dsn`), keeping `min_size` connections open."""
    size = size or settings.database_pool_size
    pool = await asyncpg.create_pool(
        min_size=min(min_size, size),
        max_size=size,
        reset=_keep_session,
        **connect_kwargs(settings, dsn),
    )
    return cast(Pool, pool)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Releasing a pooled connection skips asyncpg's session reset (a round trip per release).

    Nothing the platform runs on a pooled connection outlives its statement or transaction:
    session locks, LISTEN and SET are only used on connections of their own. An open
    transaction is still rolled back on release.
    """


async def connect(settings: Settings) -> asyncpg.Connection:
    kwargs = connect_kwargs(settings)
    conn = await asyncpg.connect(kwargs["dsn"], server_settings=kwargs["server_settings"])
    await _init_connection(conn)
    return conn


async def delete_in_batches(
    pool: Pool, statement: str, *args: object, batch: int, batches: int
) -> int:
    """Run `statement` (a DELETE of at most `$last` rows: it gets `batch` as its last argument)
    up to `batches` times, each its own short transaction, until it deletes fewer than `batch`
    rows; returns how many it deleted."""
    deleted = 0
    for _ in range(batches):
        status: str = await pool.execute(statement, *args, batch)
        count = int(status.rsplit(" ", 1)[1])  # "DELETE n"
        deleted += count
        if count < batch:
            break
    return deleted


PLATFORM_OWNER = "pipelines"
RENAME_MIGRATION = "UPDATE schema_migrations SET version = $1 WHERE version = $2"


def migration_files(extra: list[Path] | None = None) -> list[tuple[str, str, str]]:
    """(owner, file name, sql) of every migration, the platform's first, then any `extra`
    folders'. A folder's owner is the package it sits in (`auth/migrations`: auth), so two
    services may each ship a `0001_init.sql`."""
    found: list[tuple[str, str, str]] = []
    platform = resources.files("pipelines") / "migrations"
    for item in sorted(platform.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".sql"):
            found.append((PLATFORM_OWNER, item.name.removesuffix(".sql"), item.read_text()))
    for folder in extra or []:
        for path in sorted(folder.glob("*.sql")):
            found.append((folder.resolve().parent.name, path.stem, path.read_text()))
    return found


async def migrate(settings: Settings, extra: list[Path] | None = None) -> list[str]:
    """Apply the migrations not yet applied, under a lock so concurrent starts are safe."""
    conn = await asyncpg.connect(settings.database_url)
    schema = settings.database_schema
    try:
        # before CREATE SCHEMA IF NOT EXISTS, which fails when another process runs it too;
        # closing the connection releases it
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"{schema}.migrate")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            return await _apply_pending(conn, migration_files(extra))
    finally:
        await conn.close()


async def _apply_pending(
    conn: asyncpg.Connection, migrations: list[tuple[str, str, str]]
) -> list[str]:
    """Apply the migrations `schema_migrations` does not list (as `owner/name`); returns them."""
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for owner, name, sql in migrations:
        version = f"{owner}/{name}"
        if version in done:
            continue
        if name in done:  # recorded by file name alone, before migrations had owners
            await conn.execute(RENAME_MIGRATION, version, name)
            done.discard(name)
            continue
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        applied.append(version)
        log.info("applied migration %s", version)
    return applied
