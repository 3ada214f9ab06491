"""Slows password guessing: after repeated failures for one email, sign-in waits a while.

Counters live in Redis (shared by every instance), keyed by a digest of the email so the
keys name nobody. Without Redis, sign-in still works: the throttle logs and lets it through.
"""

import hashlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.errors import TooManyAttempts

log = logging.getLogger("banyan.auth.throttle")

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60  # counted from the first failure


class LoginThrottle:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, email: str) -> str:
        digest = hashlib.sha256(email.encode()).hexdigest()
        return f"{self.prefix}:auth:failures:{digest}"

    async def check(self, email: str) -> None:
        """Raise TooManyAttempts while this email has failed too often."""
        try:
            failures = int(await self.redis.get(self._key(email)) or 0)
            if failures < MAX_FAILURES:
                return
            retry_after = await self.redis.ttl(self._key(email))
        except RedisError as exc:
            log.warning("sign-in throttle unavailable: %s", exc)
            return
        raise TooManyAttempts(max(int(retry_after), 1))

    async def failed(self, email: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._key(email))
                pipe.expire(self._key(email), WINDOW_SECONDS, nx=True)
                await pipe.execute()
        except RedisError as exc:
            log.warning("cannot count a failed sign-in: %s", exc)

    async def succeeded(self, email: str) -> None:
        try:
            await self.redis.delete(self._key(email))
        except RedisError as exc:
            log.warning("cannot reset the sign-in throttle: %s", exc)
