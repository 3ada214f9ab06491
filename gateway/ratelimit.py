"""Per-caller rate limits in Redis: fixed one-minute windows shared by every gateway.

The script that counts a request also checks that its token is not revoked
(`pipelines.revocation`): still one round trip per request.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.auth import token_revoked
from gateway.errors import GatewayError
from pipelines.identity import Caller
from pipelines.redispipe import RedisPipe
from pipelines.revocation import caller_keys

WINDOW = 60  # seconds
EXPIRY = WINDOW + 1  # of a window's counter
REVOKED = -1  # what the scripts answer for a revoked token
# KEYS[1]: the counter; for a caller with a token, KEYS[2] and KEYS[3]: the revocation entries
# of its session and of its user. ARGV[1]: the counter's expiry, ARGV[2]: the token's
# generation ('' without a token). Returns {-1} for a revoked token (not counted); else sets
# `count` and `first`, the first of the keys that follow.
COUNT_UNLESS_REVOKED = """
local first = 2
if ARGV[2] ~= '' then
  first = 4
  if redis.call('EXISTS', KEYS[2]) == 1
      or tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[2]) then
    return {-1}
  end
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""
COUNT = COUNT_UNLESS_REVOKED + "return {count}"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, self.reset - int(time.time())))
        return out


@dataclass(frozen=True)
class Window:
    """The counter of one caller (and contract, if it has its own limit) in the current window."""

    key: str
    limit: int
    reset: int  # epoch seconds when the window ends
    revocation_keys: tuple[str, ...] = ()  # the token's entries (`COUNT_UNLESS_REVOKED`)
    generation: str = ""  # the token's ('' without a token)

    @property
    def keys(self) -> list[str]:
        return [self.key, *self.revocation_keys]

    def verdict(self, count: int) -> Verdict:
        """401 for a revoked token, else whether `count` is within the limit."""
        if count == REVOKED:
            raise token_revoked()
        return Verdict(count <= self.limit, self.limit, max(0, self.limit - count), self.reset)

    def unchecked(self) -> Verdict:
        """Without Redis, do not turn every request away."""
        return Verdict(True, self.limit, self.limit, self.reset)


def subject(caller: Caller | None, client: str) -> str:
    """Whose window a request counts in: its user's, else its client address's."""
    return f"user:{caller.user_id}" if caller else f"address:{client}"


def refuse_over_limit(verdict: Verdict, count: Callable[[], None]) -> None:
    """429 RATE_LIMIT_EXCEEDED, with Retry-After, when `verdict` refuses; `count` counts it."""
    if not verdict.allowed:
        count()
        raise GatewayError(
            429, "RATE_LIMIT_EXCEEDED", "too many requests", headers=verdict.headers()
        )


class RateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        user: int,
        anonymous: int,
        unavailable: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis = client
        self.pipe = RedisPipe(client)  # the scripts called per request
        self.unavailable = unavailable  # called for each request let through without Redis
        self._count = self.pipe.script(COUNT)
        self.prefix = prefix
        self.user_limit = user
        self.anonymous_limit = anonymous

    def window(
        self,
        subject: str,
        authenticated: bool,
        contract: str,
        override: int | None,
        caller: Caller | None,
    ) -> Window:
        """The window of `subject` (a user, or the address of an anonymous caller), for a
        request of `caller`, whose token it checks."""
        limit = override or (self.user_limit if authenticated else self.anonymous_limit)
        now = int(time.time())
        start = now - now % WINDOW
        scope = contract if override else "*"
        key = f"{self.prefix}:rl:{subject}:{scope}:{start}"
        if caller is None:
            return Window(key, limit, start + WINDOW)
        revocation = tuple(caller_keys(self.prefix, caller))
        return Window(key, limit, start + WINDOW, revocation, str(caller.generation))

    async def check(self, window: Window) -> Verdict:
        """Count one request in `window`."""
        try:
            reply = await self._count(keys=window.keys, args=[EXPIRY, window.generation])
        except RedisError:
            self.unavailable()
            return window.unchecked()
        return window.verdict(int(reply[0]))
