"""Query results cached in Redis, invalidated by the events their projection applies.

A cached entry's key carries the invalidation counters of the events its query declares;
a projection runner bumps the counter of each event type it applied, after committing, so
older entries are never read again. Each entry records the projection position it was
computed at, so a read-your-writes query accepts it only if it is recent enough.
"""

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("banyan.cache")

LOOKUP = """
local parts = {}
for i = 1, #KEYS do parts[i] = redis.call('GET', KEYS[i]) or '0' end
local key = ARGV[1] .. ':' .. table.concat(parts, '.')
return {key, redis.call('GET', key)}
"""


@dataclass(frozen=True)
class Cached:
    """Cache a query's results for `ttl` seconds; `per_user` keeps callers' results apart."""

    ttl: float = 60.0
    invalidated_by: tuple[type[Any], ...] = ()  # default: every event the projection folds
    per_user: bool = False


@dataclass(frozen=True)
class CacheHit:
    position: int
    body: bytes


class QueryCache:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._lookup = client.register_script(LOOKUP)

    def _counter(self, projection: str, event_type: str) -> str:
        return f"{self.prefix}:gen:{projection}:{event_type}"

    def base_key(self, service: str, query: str, canonical: bytes, user: str | None) -> str:
        digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
        return f"{self.prefix}:q:{service}:{query}:{user or '*'}:{digest}"

    async def lookup(
        self, base: str, projection: str, event_types: Iterable[str]
    ) -> tuple[str | None, CacheHit | None]:
        """The key to store under (with current counters) and the entry there, if any.

        Without Redis, (None, None): the query is answered from its projection, uncached.
        """
        keys = [self._counter(projection, t) for t in sorted(event_types)]
        try:
            key, value = await self._lookup(keys=keys, args=[base])
        except RedisError as exc:
            log.warning("query cache unavailable: %s", exc)
            return None, None
        key = key.decode() if isinstance(key, bytes) else key
        if value is None:
            return key, None
        position, _, body = bytes(value).partition(b"|")
        return key, CacheHit(int(position), body)

    async def store(self, key: str | None, ttl: float, position: int, body: bytes) -> None:
        if key is None:
            return
        try:
            await self.redis.set(key, str(position).encode() + b"|" + body, px=int(ttl * 1000))
        except RedisError as exc:
            log.warning("cannot cache a query result: %s", exc)

    async def invalidate(self, projection: str, event_types: Iterable[str]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_type in event_types:
                    pipe.incr(self._counter(projection, event_type))
                await pipe.execute()
        except RedisError as exc:  # entries still expire with their TTL
            log.error("cannot invalidate cached queries of %s: %s", projection, exc)

    async def close(self) -> None:
        await self.redis.aclose()
