"""The registry's writes: statements on discovery's tables, run inside a caller's transaction.

Heartbeats are stamped with the statement's time (clock_timestamp), not the transaction's:
a registration that waited for a lock must not look older than it is.

Every change to one service happens with its `discovery_services` row locked (`lock_service`),
so registrations, heartbeats that revive an instance, deregistrations and the health monitor
of several discovery instances never interleave on the same service.
"""

import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from pipelines.registry import ContractInfo

Connection: TypeAlias = asyncpg.Connection
Database: TypeAlias = Any  # a pool, or one connection (a command's: `ctx.store.pool`)
OWNER_CONSTRAINT = "discovery_contracts_owner"


@contextlib.asynccontextmanager
async def connection(db: Database) -> AsyncIterator[Connection]:
    """One connection of `db`: acquired from it if it is a pool, else `db` itself."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def create_service(
    conn: Connection, name: str, version: str, description: str, calls: list[str]
) -> None:
    await conn.execute(
        "INSERT INTO discovery_services (name, description, current_version, calls) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        name,
        description,
        version,
        calls,
    )


async def lock_service(conn: Connection, name: str) -> str | None:
    """Lock the service for this transaction; its current version (None: not registered)."""
    version: str | None = await conn.fetchval(
        "SELECT current_version FROM discovery_services WHERE name = $1 FOR UPDATE", name
    )
    return version


async def contracts(conn: Connection, service: str, version: str) -> dict[str, ContractInfo]:
    rows = await conn.fetch(
        "SELECT info FROM discovery_contracts WHERE service_name = $1 AND version = $2",
        service,
        version,
    )
    infos = (ContractInfo.model_validate(row["info"]) for row in rows)
    return {info.message_type: info for info in infos}


async def owners_elsewhere(conn: Connection, service: str, types: Iterable[str]) -> dict[str, str]:
    """Which of these message types other services route (message type -> service)."""
    rows = await conn.fetch(
        "SELECT message_type, service_name FROM discovery_contracts "
        "WHERE current AND message_type = ANY($1::text[]) AND service_name <> $2",
        list(types),
        service,
    )
    return {row["message_type"]: row["service_name"] for row in rows}


async def add_version(conn: Connection, service: str, version: str) -> None:
    await conn.execute(
        "INSERT INTO discovery_versions (service_name, version) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING",
        service,
        version,
    )


async def save_contracts(
    conn: Connection, service: str, version: str, infos: Iterable[ContractInfo], current: bool
) -> None:
    """Replace the contracts of `version`; `current` makes them the service's routable ones.

    Raises asyncpg.UniqueViolationError (OWNER_CONSTRAINT) if another service routes one of
    the message types.
    """
    if current:
        await conn.execute(
            "UPDATE discovery_contracts SET current = false WHERE service_name = $1 AND current",
            service,
        )
    await conn.execute(
        "DELETE FROM discovery_contracts WHERE service_name = $1 AND version = $2",
        service,
        version,
    )
    await conn.executemany(
        "INSERT INTO discovery_contracts (service_name, version, message_type, kind, info, current)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (service, version, info.message_type, info.kind, info.model_dump(mode="json"), current)
            for info in infos
        ],
    )


async def set_current(
    conn: Connection, service: str, version: str, description: str, calls: list[str]
) -> None:
    await conn.execute(
        "UPDATE discovery_services SET current_version = $2, description = $3, calls = $4, "
        "updated_at = now() WHERE name = $1",
        service,
        version,
        description,
        calls,
    )


async def upsert_instance(
    conn: Connection, service: str, instance_id: str, version: str
) -> bool | None:
    """Record a (re)registered instance as healthy; was it healthy before (None: new)?"""
    was_healthy: bool | None = await conn.fetchval(
        "WITH before AS (SELECT healthy FROM discovery_instances "
        "                WHERE service_name = $1 AND instance_id = $2) "
        "INSERT INTO discovery_instances (service_name, instance_id, version, last_heartbeat) "
        "VALUES ($1, $2, $3, clock_timestamp()) ON CONFLICT (service_name, instance_id) DO UPDATE "
        "SET version = excluded.version, healthy = true, last_heartbeat = clock_timestamp() "
        "RETURNING (SELECT healthy FROM before)",
        service,
        instance_id,
        version,
    )
    return was_healthy


async def touch_healthy_instance(conn: Database, service: str, instance_id: str) -> bool:
    """A heartbeat of a healthy instance (no lock needed: its health does not change)."""
    return bool(
        await conn.fetchval(
            "UPDATE discovery_instances SET last_heartbeat = clock_timestamp() "
            "WHERE service_name = $1 AND instance_id = $2 AND healthy RETURNING true",
            service,
            instance_id,
        )
    )


async def revive_instance(conn: Connection, service: str, instance_id: str) -> bool | None:
    """A heartbeat that makes the instance healthy; was it healthy before (None: unknown)?"""
    was_healthy: bool | None = await conn.fetchval(
        "WITH before AS (SELECT healthy FROM discovery_instances "
        "                WHERE service_name = $1 AND instance_id = $2) "
        "UPDATE discovery_instances SET last_heartbeat = clock_timestamp(), healthy = true "
        "WHERE service_name = $1 AND instance_id = $2 RETURNING (SELECT healthy FROM before)",
        service,
        instance_id,
    )
    return was_healthy


async def remove_instance(conn: Connection, service: str, instance_id: str) -> bool | None:
    """Forget an instance; was it healthy (None: unknown)?"""
    was_healthy: bool | None = await conn.fetchval(
        "DELETE FROM discovery_instances WHERE service_name = $1 AND instance_id = $2 "
        "RETURNING healthy",
        service,
        instance_id,
    )
    return was_healthy


async def any_healthy(conn: Connection, service: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM discovery_instances WHERE service_name = $1 AND healthy)",
            service,
        )
    )


async def services_with_silent_instances(
    db: Database, silence: float, since: datetime
) -> list[str]:
    """Services with a healthy instance that sent no heartbeat for `silence` seconds (and
    `since` is that long ago too: silence before then is not held against anyone)."""
    rows = await db.fetch(
        "SELECT DISTINCT service_name FROM discovery_instances "
        "WHERE healthy AND last_heartbeat < now() - make_interval(secs => $1) "
        "AND $2::timestamptz < now() - make_interval(secs => $1)",
        silence,
        since,
    )
    return [row["service_name"] for row in rows]


async def mark_silent_unhealthy(conn: Connection, service: str, silence: float) -> dict[str, float]:
    """Turn the service's silent instances unhealthy; their ids and seconds of silence."""
    rows = await conn.fetch(
        "UPDATE discovery_instances SET healthy = false "
        "WHERE service_name = $1 AND healthy "
        "AND last_heartbeat < now() - make_interval(secs => $2) "
        "RETURNING instance_id, extract(epoch FROM clock_timestamp() - last_heartbeat)::float8",
        service,
        silence,
    )
    return {row[0]: row[1] for row in sorted(rows)}


async def expired_instances(db: Database, retention: float, limit: int) -> dict[str, list[str]]:
    """Up to `limit` unhealthy instances silent for over `retention` seconds, oldest first,
    by service."""
    rows = await db.fetch(
        "SELECT service_name, instance_id FROM discovery_instances "
        "WHERE NOT healthy AND last_heartbeat < now() - make_interval(secs => $1) "
        "ORDER BY last_heartbeat LIMIT $2",
        retention,
        limit,
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["service_name"], []).append(row["instance_id"])
    return found


async def remove_expired_instances(
    conn: Connection, service: str, instance_ids: list[str], retention: float
) -> list[str]:
    """Forget those of `instance_ids` still unhealthy and silent for over `retention` seconds
    (a heartbeat or another monitor may have come first); the ids forgotten."""
    rows = await conn.fetch(
        "DELETE FROM discovery_instances WHERE service_name = $1 AND instance_id = ANY($2::text[]) "
        "AND NOT healthy AND last_heartbeat < now() - make_interval(secs => $3) "
        "RETURNING instance_id",
        service,
        instance_ids,
        retention,
    )
    return sorted(row["instance_id"] for row in rows)


async def advance_stream(conn: Connection, service: str, count: int) -> int:
    """Reserve `count` versions of the service's event stream; the first of them."""
    last: int = await conn.fetchval(
        "UPDATE discovery_services SET stream_version = stream_version + $2 WHERE name = $1 "
        "RETURNING stream_version",
        service,
        count,
    )
    return last - count + 1
