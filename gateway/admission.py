"""Admitting a call: check that its token is not revoked, count it against its caller's rate
limit and, for a cached query, look up its cached answer, in one Redis round trip (the hot path
of a cached read is just this).

Cached answers live in the platform's query cache (`pipelines.querycache`): under a key made
of the query's canonical input and the invalidation counters of the events it depends on,
with the projection position the answer was computed at.
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from gateway.metrics import GatewayMetrics
from gateway.ratelimit import (
    COUNT_UNLESS_REVOKED,
    EXPIRY,
    RateLimiter,
    Verdict,
    Window,
    subject,
)
from pipelines import headers as h
from pipelines.querycache import CacheHit, QueryCache, cache_hit
from pipelines.rpc import Response

if TYPE_CHECKING:
    from gateway.invoke import Call

log = logging.getLogger("banyan.gateway")

# As COUNT_UNLESS_REVOKED, then KEYS[first..]: the query's invalidation counters; ARGV[3]: the
# limit, ARGV[4]: the answer's base key. Returns {count} when over the limit, else
# {count, key to store under, cached entry or nil}.
COUNT_AND_LOOKUP = (
    COUNT_UNLESS_REVOKED
    + """
if count > tonumber(ARGV[3]) then return {count} end
local parts = {}
for i = first, #KEYS do parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0' end
local key = ARGV[4] .. ':' .. table.concat(parts, '.')
return {count, key, redis.call('GET', key)}
"""
)


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    cache_key: str | None = None  # where to keep the answer (a cacheable query)
    hit: CacheHit | None = None  # a cached answer recent enough for the call


class Admissions:
    def __init__(self, limiter: RateLimiter, cache: QueryCache, metrics: GatewayMetrics) -> None:
        self.limiter = limiter
        self.cache = cache
        self._hits = metrics.cache.labels("hit")
        self._misses = metrics.cache.labels("miss")
        self._count_and_lookup = limiter.pipe.script(COUNT_AND_LOOKUP)

    async def admit(self, call: "Call", canonical: bytes) -> Admission:
        """Count the call against its caller's limit and, for a cached query, look up its
        answer under `canonical` (the payload as `encode_payload` gives it)."""
        contract = call.route.contract
        caller = call.identity.caller
        user = None if contract.limit_per_address else caller
        window = self.limiter.window(
            subject(user, call.client),
            user is not None,
            contract.message_type,
            contract.rate_limit,
            caller,
        )
        base = self._cache_base(call, canonical)
        if base is None or contract.cache is None:
            return Admission(await self.limiter.check(window))
        counters = self._counters(call)
        try:
            reply = await self._count_and_lookup(
                keys=[*window.keys, *counters], args=[EXPIRY, window.generation, window.limit, base]
            )
        except RedisError as exc:  # answered from the projection, unlimited and uncached
            self.limiter.unavailable()
            log.warning("rate limits and query cache unavailable: %s", exc)
            return Admission(window.unchecked())
        return self._admission(window, call.min_position, reply)

    def _admission(self, window: Window, min_position: int, reply: list[bytes]) -> Admission:
        verdict = window.verdict(int(reply[0]))
        if not verdict.allowed:
            return Admission(verdict)
        key, entry = reply[1].decode(), reply[2]
        if entry is not None and (hit := cache_hit(entry)).position >= min_position:
            self._hits.inc()
            return Admission(verdict, key, hit)
        self._misses.inc()
        return Admission(verdict, key)

    def _counters(self, call: "Call") -> list[str]:
        info = call.route.contract.cache
        assert info is not None
        value = call.payload.get(info.key) if info.key else None
        keyed = (info.key, value) if info.key and isinstance(value, str) else None
        return self.cache.counters(info.projection, info.event_types, keyed)

    def _cache_base(self, call: "Call", canonical: bytes) -> str | None:
        info = call.route.contract.cache
        if info is None or call.route.contract.has_policies:
            return None
        return self.cache.base_key(
            f"gateway:{call.route.service}",
            call.route.contract.message_type,
            canonical,
            call.identity.caller,
            shared=info.shared,
        )

    async def remember(self, key: str | None, call: "Call", response: Response) -> None:
        """Keep a query's answer under the key its admission computed before the request."""
        info = call.route.contract.cache
        position = response.headers.get(h.READ_POSITION)
        if key is None or info is None or position is None:
            return
        await self.cache.store(key, info.ttl, int(str(position)), response.body)
