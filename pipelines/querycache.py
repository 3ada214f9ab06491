"""Query results cached in Redis, invalidated by the events their projection applies.

A cached entry's key carries counters that change when an answer may have: the projection's
epoch (a rebuild moves it) and either the counter of each event type the query declares, or,
for a query cached by `key`, the position of the last event carrying that key's value. A
projection runner moves them after committing, so older entries are never read again. Each
entry records the projection position it was computed at, so a read-your-writes query
accepts it only if it is recent enough.
"""

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pipelines.contracts import InvalidContract, Model
from pipelines.identity import Caller
from pipelines.redispipe import RedisPipe

log = logging.getLogger("banyan.cache")
# How long a key's last-change position is kept after its last change. It must outlive every
# entry stored before that change, so a keyed query's ttl may not exceed it.
KEYED_COUNTER_TTL = 86_400

LOOKUP = """
local parts = {}
for i = 1, #KEYS do parts[i] = redis.call('GET', KEYS[i]) or '0' end
local key = ARGV[1] .. ':' .. table.concat(parts, '.')
return {key, redis.call('GET', key)}
"""
# KEYS: the counters of the events' types, then keyed counters; ARGV[1]: how many of the
# first; ARGV[2]: how long a keyed counter lives; ARGV[3..]: each keyed counter's position.
INVALIDATE = """
local types = tonumber(ARGV[1])
for i = 1, types do redis.call('INCR', KEYS[i]) end
for i = types + 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i - types + 2], 'EX', ARGV[2]) end
"""


class ReadModel(Protocol):
    """What a query needs to know of the projection it reads."""

    name: str

    @property
    def event_contracts(self) -> list[type[Any]]: ...


@dataclass(frozen=True)
class Cached:
    """Cache a query's results for `ttl` seconds, each caller's apart from the others': an
    answer cached for one caller is never served to another. `shared=True` says the answer is
    the same whoever asks (it does not depend on `ctx.caller`), so every caller shares it.

    `key` names a text field of the query that its invalidating events carry too (such as
    `order_id`): an answer is then invalidated only by events with the same value, not by
    every event of its types.
    """

    ttl: float = 60.0
    invalidated_by: tuple[type[Any], ...] = ()  # default: every event the projection folds
    shared: bool = False
    key: str | None = None

    def invalidating(self, reads: ReadModel) -> list[type[Any]]:
        """The events that invalidate an answer read from `reads`."""
        return list(self.invalidated_by) or reads.event_contracts

    def __post_init__(self) -> None:
        if self.key is not None and self.ttl > KEYED_COUNTER_TTL:
            raise InvalidContract(
                f"a query cached by key keeps answers {KEYED_COUNTER_TTL}s at most"
            )


class LoggedEvent(Protocol):
    position: int
    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class CacheHit:
    position: int
    body: bytes


class QueryCache:
    """The cache's reads and writes, each one call over a pipelined connection of `client`'s
    (`pipe`, shared with other per-request calls where given)."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        keyed: dict[str, set[str]] | None = None,
        pipe: RedisPipe | None = None,
    ) -> None:
        self.redis = client
        self.pipe = pipe or RedisPipe(client)
        self.prefix = prefix
        self.keyed = keyed or {}  # per projection, the event fields keyed queries use
        self._lookup = self.pipe.script(LOOKUP)
        self._invalidate = self.pipe.script(INVALIDATE)

    def counters(
        self, projection: str, event_types: Iterable[str], keyed: tuple[str, str] | None = None
    ) -> list[str]:
        """The counters an answer's key carries; `keyed`: (event field, the query's value)."""
        epoch = f"{self.prefix}:gen:{projection}"
        if keyed is not None:
            return [epoch, self._keyed_counter(projection, *keyed)]
        return [epoch, *(f"{epoch}:{event_type}" for event_type in sorted(event_types))]

    def _keyed_counter(self, projection: str, field: str, value: str) -> str:
        digest = hashlib.blake2b(value.encode(), digest_size=12).hexdigest()
        return f"{self.prefix}:gen:{projection}:{field}={digest}"

    def base_key(
        self, service: str, query: str, canonical: bytes, caller: Caller | None, *, shared: bool
    ) -> str:
        """Where the answer to `canonical` is kept: for every caller if `shared`, else for
        `caller` alone (anonymous callers, who are all the same to a handler, share theirs)."""
        digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
        whose = "*" if shared else caller_key(caller)
        return f"{self.prefix}:q:{service}:{query}:{whose}:{digest}"

    async def lookup(self, base: str, counters: list[str]) -> tuple[str | None, CacheHit | None]:
        """The key to store under (with the current `counters`) and the entry there, if any.

        Without Redis, (None, None): the query is answered from its projection, uncached.
        """
        try:
            key, value = await self._lookup(keys=counters, args=[base])
        except RedisError as exc:
            log.warning("query cache unavailable: %s", exc)
            return None, None
        key = key.decode() if isinstance(key, bytes) else key
        return key, None if value is None else cache_hit(value)

    async def store(self, key: str | None, ttl: float, position: int, body: bytes) -> None:
        if key is None:
            return
        try:
            entry = str(position).encode() + b"|" + body
            await self.pipe.call(b"SET", key, entry, b"PX", int(ttl * 1000))
        except RedisError as exc:
            log.warning("cannot cache a query result: %s", exc)

    async def invalidate(self, projection: str, events: Sequence[LoggedEvent]) -> None:
        """After `events` were applied and committed: the answers they may change go."""
        counters = self.counters(projection, {e.event_type for e in events})[1:]
        types, positions = len(counters), []
        for event in events:
            for field in self.keyed.get(projection, ()):
                if isinstance(value := event.data.get(field), str):
                    counters.append(self._keyed_counter(projection, field, value))
                    positions.append(event.position)
        try:
            await self._invalidate(keys=counters, args=[types, KEYED_COUNTER_TTL, *positions])
        except RedisError as exc:  # entries still expire with their TTL
            log.error("cannot invalidate cached queries of %s: %s", projection, exc)

    async def reset(self, projection: str) -> None:
        """Every cached answer from `projection` goes (after a rebuild, say)."""
        try:
            await self.pipe.call(b"INCR", self.counters(projection, ())[0])
        except RedisError as exc:
            log.error("cannot invalidate cached queries of %s: %s", projection, exc)

    async def close(self) -> None:
        await self.pipe.close()
        await self.redis.aclose()


def caller_key(caller: Caller | None) -> str:
    """The caller as a cached answer's key names them: with their permissions, since an answer
    may depend on them (one computed before an admin permission was revoked is not reused)."""
    if caller is None:
        return "anonymous"
    granted = ",".join(sorted(caller.permissions)).encode()
    return f"user={caller.user_id}:{hashlib.blake2b(granted, digest_size=8).hexdigest()}"


def cache_hit(entry: bytes) -> CacheHit:
    position, _, body = bytes(entry).partition(b"|")
    return CacheHit(int(position), body)


def keyed_value(cache: Cached, query: Model) -> tuple[str, str] | None:
    """(event field, value) that invalidates `query`'s answer, for a query cached by key."""
    if cache.key is None or not isinstance(value := getattr(query, cache.key), str):
        return None
    return key_alias(type(query), cache.key), value


def keyed_fields(handlers: Iterable[Any]) -> dict[str, set[str]]:
    """Per projection, the event fields its keyed cached queries are invalidated by.

    Checks each such query: its key is a text field of the query and of every event that
    invalidates it (an event without it could never invalidate the answer).
    """
    fields: dict[str, set[str]] = defaultdict(set)
    for handler in handlers:
        cache, reads = getattr(handler, "cache", None), getattr(handler, "reads", None)
        if cache is None or cache.key is None or reads is None:
            continue
        query = handler.contract
        for contract in (query, *cache.invalidating(reads)):
            field = contract.model_fields.get(cache.key)
            if field is None or field.annotation not in (str, str | None):
                raise InvalidContract(
                    f"{query.__name__} is cached by {cache.key}, "
                    f"which {contract.__name__} does not have as a text field"
                )
        fields[reads.name].add(key_alias(query, cache.key))
    return dict(fields)


def key_alias(contract: type[Model], field: str) -> str:
    """The name of a query's key field in JSON (and in its events' data)."""
    return contract.model_fields[field].alias or field
