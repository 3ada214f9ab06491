"""The registry's views cached in Redis: every change to the registry invalidates them all.

Built on the platform's query cache: entries are keyed by a generation counter that a change
bumps after its commit, so an answer computed from older rows is never read again.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pipelines.querycache import QueryCache
from pipelines.redisclient import connect_redis
from pipelines.registry import DISCOVERY

if TYPE_CHECKING:
    from pipelines.instance import ServiceInstance

GENERATION = "discovery-registry"  # the counter, as QueryCache names projections


class RegistryCache:
    def __init__(self, queries: QueryCache, ttl: float) -> None:
        self.queries = queries
        self.ttl = ttl  # of views showing heartbeats: they age without any change

    async def read(
        self, view: str, argument: str, ttl: float, load: Callable[[], Awaitable[bytes | None]]
    ) -> bytes | None:
        """The cached `view` of `argument`, else `load()` (and cache it unless None)."""
        base = self.queries.base_key(DISCOVERY, view, argument.encode(), None, shared=True)
        key, hit = await self.queries.lookup(base, self.queries.counters(GENERATION, ()))
        if hit is not None:
            return hit.body
        body = await load()
        if body is not None:
            await self.queries.store(key, ttl, 0, body)
        return body

    async def invalidate(self) -> None:
        await self.queries.reset(GENERATION)


# Handlers see only their context, not their instance: the cache belongs to the process,
# owned by the discovery instance that started last (as `service.http`'s state is).
_attached: list[RegistryCache] = []


def current_cache() -> RegistryCache | None:
    return _attached[-1] if _attached else None


async def keep_cache(instance: "ServiceInstance") -> None:
    """Background task: the instance's registry cache, from its start until it stops."""
    queries = QueryCache(connect_redis(instance.settings), instance.settings.cache_prefix)
    cache = RegistryCache(queries, instance.settings.heartbeat_interval)
    _attached.append(cache)
    try:
        # requests handled before this task started changed the registry uncached
        await cache.invalidate()
        await asyncio.Future()  # until cancelled
    finally:
        _attached.remove(cache)
        await queries.close()
