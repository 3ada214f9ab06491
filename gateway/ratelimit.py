"""Per-caller rate limits in Redis: fixed one-minute windows shared by every gateway."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import GatewayError
from pipelines.identity import Caller

WINDOW = 60  # seconds
EXPIRY = WINDOW + 1  # of a window's counter
COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


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

    def verdict(self, count: int) -> Verdict:
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
        self.unavailable = unavailable  # called for each request let through without Redis
        self._count = client.register_script(COUNT)
        self.prefix = prefix
        self.user_limit = user
        self.anonymous_limit = anonymous

    def window(
        self, subject: str, authenticated: bool, contract: str, override: int | None
    ) -> Window:
        """The window of `subject`: a user, or the address of an anonymous caller."""
        limit = override or (self.user_limit if authenticated else self.anonymous_limit)
        now = int(time.time())
        start = now - now % WINDOW
        scope = contract if override else "*"
        return Window(f"{self.prefix}:rl:{subject}:{scope}:{start}", limit, start + WINDOW)

    async def check(self, window: Window) -> Verdict:
        """Count one request in `window`."""
        try:
            count = int(await self._count(keys=[window.key], args=[EXPIRY]))
        except RedisError:
            self.unavailable()
            return window.unchecked()
        return window.verdict(count)
