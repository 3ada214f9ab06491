"""The platform's Redis clients (cache, rate limits, revocation list), all built here: every
call bounded, so a frozen Redis costs a request at most `REDIS_TIMEOUT` (the cache and the
rate limits then fail open) instead of seconds.

With `REDIS_SENTINELS` the client asks the Sentinels for the master of `REDIS_MASTER_NAME` on
each new connection, so it follows a failover; while no master is known its calls fail as
they would against a refused Redis (a `RedisError`), and the callers fail open the same way."""

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url

from pipelines.settings import Settings

SENTINEL_PORT = 26379


def connect_redis(settings: Settings) -> aioredis.Redis:
    bounded: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    if not settings.redis_sentinels:
        return aioredis.from_url(settings.redis_url, **bounded)
    # the master's password, user name and database
    master: dict[str, Any] = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    sentinel = Sentinel(sentinel_addresses(settings), sentinel_kwargs=bounded)
    chosen = {k: master[k] for k in ("password", "username", "db") if k in master}
    client: aioredis.Redis = sentinel.master_for(settings.redis_master_name, **chosen, **bounded)
    return client


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    """(host, port) of each Sentinel in `REDIS_SENTINELS` (`host[:port]`, comma-separated)."""
    addresses = []
    for entry in filter(None, (e.strip() for e in settings.redis_sentinels.split(","))):
        host, _, port = entry.partition(":")
        addresses.append((host, int(port or SENTINEL_PORT)))
    return addresses
