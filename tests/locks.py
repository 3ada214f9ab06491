"""Ending the database session that holds an advisory lock, as a failover or a cut would."""

from typing import Any, Protocol


class Queries(Protocol):
    async def fetchval(self, query: str, *args: Any) -> Any: ...


async def end_lock_session(db: Queries, key: str) -> list[bool]:
    """pg_terminate_backend of the session holding lock `key`, waiting until it has ended;
    whether each holder's session ended (one holder: [True])."""
    ended = await db.fetchval(
        "SELECT array_agg(pg_terminate_backend(pid, 5000)) FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted "
        "AND objid = (hashtext($1)::bigint & 4294967295)::oid",
        key,
    )
    return list(ended or [])
