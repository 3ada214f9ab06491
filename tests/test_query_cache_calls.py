"""The query cache's reads and writes go over one pipelined connection (`pipelines.redispipe`),
each a single call: a projection batch's invalidation is one script, however many events and
keys it carries, with the same effect as a command per counter."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pipelines.querycache import KEYED_COUNTER_TTL, QueryCache
from pipelines.redisclient import connect_redis
from pipelines.settings import Settings
from tests.redis_connections import count_opened

PROJECTION = "order_summary"


@dataclass
class Event:
    position: int
    event_type: str
    data: dict[str, Any]


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[QueryCache]:
    prefix = f"{settings.cache_prefix}:{uuid.uuid4().hex[:8]}"
    queries = QueryCache(connect_redis(settings), prefix, {PROJECTION: {"orderId"}})
    yield queries
    await queries.close()


async def answer(cache: QueryCache, counters: list[str]) -> bytes | None:
    key, hit = await cache.lookup(f"{cache.prefix}:q:orders:GetOrder:*:x", counters)
    if hit is None:
        await cache.store(key, 60, 7, b"answer")
    return None if hit is None else hit.body


async def test_a_stored_answer_is_read_until_an_event_of_its_type(cache: QueryCache) -> None:
    counters = cache.counters(PROJECTION, ["OrderPlaced"])
    assert await answer(cache, counters) is None
    assert await answer(cache, counters) == b"answer"
    await cache.invalidate(PROJECTION, [Event(1, "OrderShipped", {})])
    assert await answer(cache, counters) == b"answer", "another type's event invalidated it"
    await cache.invalidate(PROJECTION, [Event(2, "OrderPlaced", {}), Event(3, "OrderPlaced", {})])
    assert await answer(cache, counters) is None
    await cache.reset(PROJECTION)
    assert await answer(cache, counters) is None, "a reset left the answer in place"


async def test_keyed_counters_hold_the_last_position_of_their_key(cache: QueryCache) -> None:
    order, other = f"o-{uuid.uuid4().hex}", f"o-{uuid.uuid4().hex}"
    events = [
        Event(10, "OrderPlaced", {"orderId": order}),
        Event(11, "OrderPlaced", {"orderId": other}),
        Event(12, "OrderCancelled", {"orderId": order}),
        Event(13, "OrderCancelled", {"orderId": 5}),  # not text: no key
    ]
    await cache.invalidate(PROJECTION, events)
    redis: aioredis.Redis = cache.redis
    mine = cache.counters(PROJECTION, (), ("orderId", order))[1]
    theirs = cache.counters(PROJECTION, (), ("orderId", other))[1]
    assert [await redis.get(mine), await redis.get(theirs)] == [b"12", b"11"]
    assert 0 < await redis.ttl(mine) <= KEYED_COUNTER_TTL
    typed = cache.counters(PROJECTION, ["OrderPlaced", "OrderCancelled"])[1:]
    assert [await redis.get(counter) for counter in typed] == [b"1", b"1"]


async def test_cache_calls_in_flight_share_one_connection(
    cache: QueryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's pool opened a connection per call in flight, and cost about 130 µs of CPU per
    call; a batch's invalidation took a round trip per pipeline of commands."""
    opened = count_opened(cache.redis, monkeypatch)
    counters = cache.counters(PROJECTION, ["OrderPlaced"])
    events = [Event(n, "OrderPlaced", {"orderId": f"o-{n}"}) for n in range(50)]
    await asyncio.gather(
        *(answer(cache, counters) for _ in range(32)),
        *(cache.invalidate(PROJECTION, events) for _ in range(8)),
        cache.reset(PROJECTION),
    )
    assert len(opened) == 1, f"{len(opened)} connections for 41 calls in flight"


async def test_without_redis_the_cache_answers_nothing_and_fails_nothing(
    settings: Settings,
) -> None:
    client = aioredis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    gone = QueryCache(client, "p")
    try:
        assert await gone.lookup("p:q", ["p:gen:x"]) == (None, None)
        await gone.store("p:q:k", 60, 1, b"x")
        await gone.invalidate(PROJECTION, [Event(1, "OrderPlaced", {})])
        await gone.reset(PROJECTION)
    finally:
        await gone.close()
