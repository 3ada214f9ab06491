"""The platform's Redis clients: every call bounded, so a frozen Redis costs a request at most
`REDIS_TIMEOUT` (the cache and the rate limits then fail open) instead of seconds."""

import redis.asyncio as aioredis

from pipelines.settings import Settings


def connect_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
