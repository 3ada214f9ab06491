"""Slows password guessing from one address without locking the user out from another.

Failures are counted per (email, client address): after a few free ones, each further failure
makes that address wait 2, 4, 8... seconds (up to a cap) before it may try that email again.
Nothing is counted per email alone, so an attacker elsewhere cannot lock out the real user;
how fast one address may guess across emails is the gateway's per-address limit on sign-in.

Records live in Redis (shared by every instance), keyed by a digest so the keys name nobody.
Without Redis, sign-in still works: the throttle logs and lets it through.
"""

import hashlib
import logging
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.errors import TooManyAttempts

log = logging.getLogger("banyan.auth.throttle")

FORGET_AFTER = 24 * 3600  # seconds after its last failure that an (email, address) is forgotten

# KEYS[1]: the (email, address) record. ARGV: now (ms), free failures, longest delay (ms),
# expiry (s). Counts one failure; past the free ones, sets when the next attempt may come.
FAIL = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
local over = failures - tonumber(ARGV[2])
if over > 0 then
  local delay = math.min(1000 * 2 ^ math.min(over, 40), tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'until', tonumber(ARGV[1]) + delay)
end
return failures
"""


class LoginThrottle:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        free_failures: int,
        max_delay: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.free_failures = free_failures
        self.max_delay = max_delay  # seconds
        self.clock = clock
        self._fail = client.register_script(FAIL)

    def _key(self, email: str, address: str) -> str:
        digest = hashlib.sha256(f"{email}\0{address}".encode()).hexdigest()
        return f"{self.prefix}:auth:failures:{digest}"

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def check(self, email: str, address: str) -> None:
        """Raise TooManyAttempts while `address` must wait before trying `email` again."""
        try:
            until = await self.redis.hget(self._key(email, address), "until")
        except RedisError as exc:
            log.warning("sign-in throttle unavailable: %s", exc)
            return
        wait_ms = int(until or 0) - self._now_ms()
        if wait_ms > 0:
            raise TooManyAttempts(math.ceil(wait_ms / 1000))

    async def failed(self, email: str, address: str) -> None:
        args = [self._now_ms(), self.free_failures, self.max_delay * 1000, FORGET_AFTER]
        try:
            await self._fail(keys=[self._key(email, address)], args=args)
        except RedisError as exc:
            log.warning("cannot count a failed sign-in: %s", exc)

    async def succeeded(self, email: str, address: str) -> None:
        try:
            await self.redis.delete(self._key(email, address))
        except RedisError as exc:
            log.warning("cannot reset the sign-in throttle: %s", exc)
