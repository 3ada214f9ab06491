"""Read models against hand-written baselines: rebuild, live lag and cached queries.

    .venv/bin/python -m bench.projections            # 1,000,000 events: about 8 minutes
    .venv/bin/python -m bench.projections --quick    # about 30 seconds
    .venv/bin/python -m bench.projections --only rebuild --upcast-rebuilds 0   # 1 alone

1. Rebuild of `order_summary` (`projections.rebuild.Rebuild`) over a generated log versus a
   hand-written asyncpg replay into its own table (same batch size, same documents). Both run
   in this process with its garbage collector set as `banyan projections rebuild` sets it
   (`tune_collector`), restored for the parts after.
   1b. The same rebuild reading every event through a one-step upcaster (its classes one
   version up, the log as written) versus without: what upcasting costs (goal: <= 10%).
2. Live lag while PlaceOrder arrives at a steady rate: the orders service's projection runner
   versus a hand-written LISTEN loop, both following the same log at the same time. The lag of
   an event runs from its commit (its `occurred_at`: the start of its one-statement append) to
   the arrival of the NOTIFY that announces a checkpoint covering it (wall clock, one
   listening connection for both).
3. GetOrder answered from the query cache (`x-cache: hit`) versus (a) a bare Redis GET of the
   same key and (b) a hand-written aio-pika service answering from one Redis GET (same bus hop).

The run gets its own RabbitMQ vhost, PostgreSQL schemas and cache prefix, dropped at the end.
"""

import argparse
import asyncio
import gc
import io
import os
import types
from bisect import bisect_left
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import perf_counter, time_ns
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis

from bench import orderlog
from bench import readmodel_baseline as baseline
from bench.common import (
    Comparison,
    Goal,
    Op,
    Sample,
    Stats,
    add_size_options,
    chosen_sizes,
    compare,
    print_comparison,
    print_goals,
    print_summary,
)
from bench.environment import isolated_settings
from examples.orders import service
from examples.orders.contracts import GetOrder, PlaceOrder
from examples.orders.summary import order_summary
from pipelines import eventloop, upcaster
from pipelines.collector import REBUILD_YOUNG_OBJECTS, tune_collector
from pipelines.database import create_pool, migrate
from pipelines.identity import Caller, TokenCodec
from pipelines.instance import ServiceInstance
from pipelines.querycache import QueryCache
from pipelines.rpc import Response, RpcClient
from pipelines.settings import Settings
from pipelines.testing.isolation import drop_isolated_env
from pipelines.topology import request_queue_name
from projections import Projection
from projections.progress import Progress
from projections.rebuild import Rebuild

BASELINE_TABLE = "bench_order_summary"
BASELINE_QUERY_QUEUE = "bench.baseline.queries.GetOrder"
PROJECTION = "order_summary"
REBUILD_GOAL_S = 20.0  # per 1,000,000 events
REBUILD_RATIO_GOAL = 1.0  # the rebuild at least as fast as the hand-written one
UPCAST_GOAL = 0.9  # rebuild throughput through a one-step upcaster on every event / without
LAG_GOAL_MS = 50.0  # p99, at 500 events/s
T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Sizes:
    events: int = 1_000_000  # generated log the rebuilds replay
    rebuilds: int = 2  # rebuilds per side, alternating which goes first
    upcast_rebuilds: int = 4  # rebuilds per side through upcasters and without (1b)
    batch: int = 5000  # events per rebuild batch, both sides
    rate: int = 500  # PlaceOrder per second while measuring lag
    seconds: int = 10  # of steady load (after half a second of warm-up)
    queries: int = 3000  # cached GetOrder round trips per side and comparison
    rounds: int = 6  # alternating SDK/baseline rounds of queries
    warmup: int = 200  # queries per side before measuring


QUICK = Sizes(
    events=60_000, rebuilds=1, upcast_rebuilds=3, seconds=2, queries=600, rounds=2, warmup=100
)


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    only: str | None
    relay: bool


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.projections",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about 30 s)")
    parser.add_argument("--only", choices=["rebuild", "lag", "cache"], help="run one part")
    parser.add_argument(
        "--relay",
        action="store_true",
        help="keep the orders service's event relay running (the baselines have none)",
    )
    add_size_options(parser, Sizes(), QUICK)
    args = parser.parse_args(argv)
    sizes = chosen_sizes(args, QUICK if args.quick else Sizes())
    return Options(sizes, args.only, args.relay)


# --- 1. rebuild -------------------------------------------------------------------------------


async def bench_rebuild(settings: Settings, sizes: Sizes) -> list[Comparison]:
    own = settings.model_copy(
        update={"database_schema": rebuild_schema(settings), "rebuild_batch_size": sizes.batch}
    )
    await migrate(own)
    async with AsyncExitStack() as stack:
        conn = await baseline.connect(own.database_url, own.database_schema)
        stack.push_async_callback(conn.close)
        started = perf_counter()
        await orderlog.generate(conn, sizes.events, own.database_schema)
        print(
            f"\ngenerated {sizes.events:,} events in {perf_counter() - started:.1f} s", flush=True
        )
        pool = await create_pool(own, 2)
        stack.push_async_callback(pool.close)
        thresholds = gc.get_threshold()
        tune_collector(REBUILD_YOUNG_OBJECTS)  # as `banyan projections rebuild`; both sides gain
        stack.callback(gc.set_threshold, *thresholds)  # the live parts run as services do

        async def sdk() -> None:
            await Rebuild(order_summary, own, pool, Progress(PROJECTION, io.StringIO())).run()

        async def hand() -> None:
            await baseline.rebuild(conn, BASELINE_TABLE, sizes.batch)

        result = await compare(
            f"1. rebuild {PROJECTION}, {sizes.events:,} events, batches of {sizes.batch:,}",
            sdk,
            hand,
            count=sizes.rebuilds,
            rounds=sizes.rebuilds,
            warmup=0,
            items_per_op=sizes.events,
            unit="events",
        )
        await check_same_documents(conn)
        upcasting = await bench_upcasting(own, pool, sizes) if sizes.upcast_rebuilds else None
    await drop_schema(settings.database_url, own.database_schema)
    return [result] if upcasting is None else [result, upcasting]


async def bench_upcasting(settings: Settings, pool: asyncpg.Pool, sizes: Sizes) -> Comparison:
    """1b: the rebuild with every event upcast once on its way in, against the same rebuild of
    a log already written in the new shape: the same classes, the same documents, so the
    difference is what reading through the upcaster costs."""
    upcast = one_version_up(order_summary)
    current = current_shape_settings(settings)
    async with AsyncExitStack() as stack:
        await copy_log_in_new_shape(settings, current)
        stack.push_async_callback(drop_schema, settings.database_url, current.database_schema)
        current_pool = await create_pool(current, 2)
        stack.push_async_callback(current_pool.close)

        def rebuild(on: Settings, pool: asyncpg.Pool) -> Op:
            async def op() -> None:
                await Rebuild(upcast, on, pool, Progress(PROJECTION, io.StringIO())).run()

            return op

        return await compare(
            f"1b. rebuild {PROJECTION} through a one-step upcaster on every event vs the same "
            "log already in the new shape",
            rebuild(settings, pool),
            rebuild(current, current_pool),
            count=sizes.upcast_rebuilds,
            rounds=sizes.upcast_rebuilds,
            warmup=0,
            items_per_op=sizes.events,
            unit="events",
            scored=False,  # its goal is UPCAST_GOAL, among the goals
        )


def current_shape_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"database_schema": f"{settings.database_schema}_v2"})


async def copy_log_in_new_shape(settings: Settings, current: Settings) -> None:
    """The log of `settings` copied into the schema of `current` as the upcaster would have it
    written: every payload with the field the step adds, at the next version."""
    await migrate(current)
    conn = await asyncpg.connect(settings.database_url)
    try:
        old, new = settings.database_schema, current.database_schema
        await conn.execute(
            f'INSERT INTO "{new}".events SELECT * FROM "{old}".events; '
            f'UPDATE "{new}".events SET data = data::jsonb || \'{{"channel": "web"}}\', '
            "schema_version = schema_version + 1; "
            f"SELECT setval('\"{new}\".events_position_seq', "
            f'(SELECT max(position) FROM "{new}".events))'
        )
        await conn.execute(f'VACUUM ANALYZE "{new}".events')  # outside the copy's transaction
    finally:
        await conn.close()


def one_version_up(projection: Projection) -> Projection:
    """`projection` with each event class one version newer than the log it reads, and an
    upcaster from the stored version (it adds a field, as a typical step does)."""
    newer = Projection(
        projection.name, indexes=projection.indexes, batch_size=projection.batch_size
    )
    for event, fn in projection.handlers.values():
        version = event.__version__
        successor = types.new_class(event.__name__, (event,), {"version": version + 1})
        upcaster(successor, version)(with_channel)
        newer.on(successor)(fn)
    return newer


def with_channel(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "channel": "web"}


async def check_same_documents(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE s.doc IS DISTINCT FROM b.doc) AS diff "
        f'FROM "{PROJECTION}" AS s FULL JOIN "{BASELINE_TABLE}" AS b USING (id)'
    )
    verdict = "identical" if row["diff"] == 0 else f"{row['diff']:,} DIFFERENT"
    print(f"  documents: {row['total']:,}, SDK and hand-written {verdict}", flush=True)


# --- the running orders service (2 and 3) -------------------------------------------------------


@dataclass(frozen=True)
class Live:
    instance: ServiceInstance
    rpc: RpcClient
    token: str

    def headers(self, message_type: str, **extra: Any) -> dict[str, Any]:
        return {"x-message-type": message_type, "x-user-token": self.token, **extra}

    async def place(self) -> Response:
        """One PlaceOrder through the bus; its Response."""
        reply = await self.rpc.request(
            request_queue_name("orders", PlaceOrder), ORDER, headers=self.headers("PlaceOrder")
        )
        if not reply.ok:
            raise RuntimeError(f"PlaceOrder failed: {reply.body[:300]!r}")
        return reply


CUSTOMER = Caller("bench-customer", permissions=frozenset({"orders:place", "orders:read"}))
ORDER = (
    b'{"customerId":"bench-customer","items":[{"sku":"apple","quantity":3,"unitPrice":"1.50"},'
    b'{"sku":"pear","quantity":1,"unitPrice":"2.25"}]}'
)


async def start_live(settings: Settings, stack: AsyncExitStack) -> Live:
    instance = service.instance(settings)
    stack.push_async_callback(instance.stop)
    await instance.start()
    await asyncio.wait_for(instance.runners[PROJECTION].is_leader.wait(), 30)
    rpc = await RpcClient(settings.rabbitmq_url, service_name="bench").connect()
    stack.push_async_callback(rpc.close)
    token = TokenCodec(settings).issue(CUSTOMER, 86400)
    return Live(instance, rpc, token)


# --- 2. live lag ------------------------------------------------------------------------------


class NotifyClock:
    """When each checkpoint NOTIFY arrived (wall clock), per channel, on one connection."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[tuple[int, str]]] = {}

    async def listen(self, conn: asyncpg.Connection, channels: Sequence[str]) -> None:
        for channel in channels:
            self.arrivals[channel] = []
            await conn.add_listener(channel, self._on_notify)

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self.arrivals[channel].append((time_ns(), payload))

    def covers(self, channel: str, name: str | None = None) -> list[tuple[int, int]]:
        """(arrival time, position) of checkpoints; payloads "position" or "name:position"."""
        out = []
        for at, payload in self.arrivals[channel]:
            who, _, position = payload.rpartition(":")
            if name is None or who == name:
                out.append((at, int(position)))
        return out

    def reached(self, channel: str, name: str | None = None) -> int:
        return max((position for _, position in self.covers(channel, name)), default=0)


async def commit_times(conn: asyncpg.Connection, positions: list[int]) -> dict[int, int]:
    """Position -> occurred_at in ns since the epoch: when its append statement began.

    A command's append is one statement that commits at once, so this is its commit time
    less the statement's own duration (the append lock, the insert, the commit flush).
    """
    rows = await conn.fetch(
        "SELECT position, occurred_at FROM events WHERE position = ANY($1::bigint[])", positions
    )
    return {
        r["position"]: (r["occurred_at"] - EPOCH) // timedelta(microseconds=1) * 1000 for r in rows
    }


def lags_ns(
    commits: dict[int, int], covers: list[tuple[int, int]], positions: list[int]
) -> list[int]:
    """For each position, from its commit to the first checkpoint at or past it."""
    reached, times, top = [], [], 0
    for at, position in covers:
        top = max(top, position)
        reached.append(top)
        times.append(at)
    lags = []
    for position in positions:
        i = bisect_left(reached, position)
        if position in commits and i < len(reached):
            lags.append(times[i] - commits[position])
    return lags


async def steady(op: Callable[[], Coroutine[Any, Any, T]], rate: int, seconds: float) -> list[T]:
    """Start `op` `rate` times a second for `seconds`, whatever the replies take; all results."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[T]] = []
    for i in range(int(rate * seconds)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(op()))
    return await asyncio.gather(*tasks)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        await asyncio.sleep(0.01)


async def bench_lag(settings: Settings, sizes: Sizes, live: Live) -> Comparison:
    schema = settings.database_schema
    follower = baseline.Follower(
        settings.database_url,
        schema,
        BASELINE_TABLE,
        order_summary.batch_size,
        settings.relay_poll_interval,
    )
    projections = f"{schema}.projections"
    clock = NotifyClock()
    async with AsyncExitStack() as stack:
        conn = await baseline.connect(settings.database_url, schema)
        stack.push_async_callback(conn.close)
        await clock.listen(conn, [projections, follower.channel])
        stack.push_async_callback(cancel, asyncio.create_task(follower.run()))
        positions = await place_steadily(live, sizes)
        last = max(positions)
        await until(lambda: clock.reached(projections, PROJECTION) >= last, 30, "SDK projection")
        await until(lambda: clock.reached(follower.channel) >= last, 30, "hand-written follower")
        commits = await commit_times(conn, positions)
    span = (max(commits.values()) - min(commits.values())) / 1e9
    result = Comparison(
        f"2. live lag commit -> projected, PlaceOrder sent at {sizes.rate}/s for {sizes.seconds} s",
        Stats.of(Sample(lags_ns(commits, clock.covers(projections, PROJECTION), positions), span)),
        Stats.of(Sample(lags_ns(commits, clock.covers(follower.channel), positions), span)),
        "events",
        1,
    )
    print_comparison(result)
    print("  (throughput: events committed per second while measuring; n: events measured)")
    if result.sdk.throughput < 0.9 * sizes.rate:
        print(f"  NOTE: commits fell behind the {sizes.rate}/s sent: lag measured under overload")
    return result


async def place_steadily(live: Live, sizes: Sizes) -> list[int]:
    """Half a second of warm-up, then the measured orders; their positions."""
    await steady(live.place, sizes.rate, 0.5)
    replies = await steady(live.place, sizes.rate, sizes.seconds)
    return [p for r in replies if (p := r.position) is not None]


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --- 3. cached query ----------------------------------------------------------------------------


def query_op(live: Live, queue: str, body: bytes) -> Op:
    headers = live.headers("GetOrder")

    async def op() -> None:
        reply = await live.rpc.request(queue, body, headers=headers)
        if not reply.ok or reply.headers.get("x-cache") != "hit":
            raise RuntimeError(f"{queue}: no cache hit: {reply.headers} {reply.body[:200]!r}")

    return op


async def answered_from_cache(live: Live, queue: str, body: bytes, position: int) -> None:
    """Ask (once the projection has the order) until the service answers from its cache."""
    headers = live.headers("GetOrder", **{"x-min-position": position})
    for _ in range(50):
        reply = await live.rpc.request(queue, body, headers=headers)
        if reply.ok and reply.headers.get("x-cache") == "hit":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"GetOrder never answered from the cache: {reply.body[:200]!r}")


async def cache_entry(cache: QueryCache | None, order_id: str) -> tuple[str, bytes]:
    """The Redis key and stored answer of GetOrder(order_id), as the service looks them up."""
    assert cache is not None, "the orders service caches its queries"
    canonical = GetOrder(order_id=order_id).model_dump_json().encode()
    base = cache.base_key("orders", "GetOrder", canonical, CUSTOMER, shared=False)
    counters = cache.counters(PROJECTION, order_summary.event_types, ("orderId", order_id))
    key, hit = await cache.lookup(base, counters)
    if key is None or hit is None:
        raise RuntimeError(f"no cached answer for GetOrder {order_id}")
    return key, hit.body


async def bench_cache(
    settings: Settings, sizes: Sizes, live: Live, stack: AsyncExitStack
) -> list[Comparison]:
    placed = await live.place()
    order_id = placed.json()["orderId"]
    body = GetOrder(order_id=order_id).to_json()
    queue = request_queue_name("orders", GetOrder)
    await answered_from_cache(live, queue, body, placed.position or 0)
    key, answer = await cache_entry(live.instance.runtime.cache, order_id)
    redis = aioredis.from_url(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    service = baseline.QueryService(
        settings.rabbitmq_url,
        BASELINE_QUERY_QUEUE,
        redis,
        f"{settings.cache_prefix}:bench:GetOrder",
        settings.jwt_secret,
    )
    await redis.set(service.key(order_id), answer)
    stack.push_async_callback(service.stop)
    await service.start(settings.prefetch_count)

    async def redis_get() -> None:
        if await redis.get(key) is None:
            raise RuntimeError(f"{key} is not cached")

    sdk = query_op(live, queue, body)
    hand = query_op(live, BASELINE_QUERY_QUEUE, body)
    sizing: dict[str, Any] = {
        "count": sizes.queries,
        "rounds": sizes.rounds,
        "warmup": sizes.warmup,
    }
    return [
        # a reference, without a goal: a bus round trip against a GET in this very process
        await compare(
            "3a. cached GetOrder: SDK RPC vs bare Redis GET (reference)",
            sdk,
            redis_get,
            scored=False,
            **sizing,
        ),
        await compare("3b. cached GetOrder: SDK vs aio-pika + Redis GET", sdk, hand, **sizing),
    ]


# --- the run ----------------------------------------------------------------------------------


async def run(settings: Settings, options: Options) -> None:
    sizes, only = options.sizes, options.only
    results: list[Comparison] = []
    goals: list[Goal] = []
    if only in (None, "rebuild"):
        rebuilds = await bench_rebuild(settings, sizes)
        results += rebuilds
        rebuild = rebuilds[0]
        seconds = rebuild.sdk.median_ms / 1000 * 1_000_000 / sizes.events
        what = "SDK rebuild of 1,000,000 events"
        if sizes.events != 1_000_000:
            what += f" (extrapolated linearly from {sizes.events:,})"
        goals.append(Goal(what, seconds, REBUILD_GOAL_S, " s", True))
        goals.append(Goal("SDK rebuild / hand-written (throughput)", rebuild.throughput_ratio,
                          REBUILD_RATIO_GOAL))  # fmt: skip
        if len(rebuilds) > 1:  # --upcast-rebuilds 0 leaves 1b out
            what = "rebuild through upcasters / without (median ratio)"
            goals.append(Goal(what, rebuilds[1].median_ratio, UPCAST_GOAL))
    if only != "rebuild":
        async with AsyncExitStack() as stack:
            live = await start_live(settings, stack)
            if only in (None, "lag"):
                lag = await bench_lag(settings, sizes, live)
                results.append(lag)
                what = f"SDK live lag p99, {lag.sdk.throughput:,.0f} events/s committed"
                goals.append(Goal(what, lag.sdk.p99_ms, LAG_GOAL_MS, " ms", True))
            if only in (None, "cache"):
                results += await bench_cache(settings, sizes, live, stack)
    print_summary(results)
    if goals:
        print_goals(goals)


def rebuild_schema(settings: Settings) -> str:
    return f"{settings.database_schema}_rebuild"


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def drop_cache(url: str, prefix: str) -> None:
    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def cleanup(settings: Settings, env: dict[str, str]) -> None:
    try:
        await drop_schema(settings.database_url, rebuild_schema(settings))
        await drop_cache(settings.redis_url, settings.cache_prefix)
    finally:
        await drop_isolated_env(env)


def describe(settings: Settings, options: Options) -> None:
    s = options.sizes
    print("Banyan read-model benchmark: SDK vs hand-written (asyncpg, redis, aio-pika)")
    print(
        f"  vhost {os.environ.get('BANYAN_TEST_VHOST', '(default)')}, schemas "
        f"{settings.database_schema} (live) / {rebuild_schema(settings)} (rebuild), "
        f"cache prefix {settings.cache_prefix}; orders relay {'on' if options.relay else 'off'}"
    )
    print(
        f"  rebuild: {s.events:,} events, {s.rebuilds} per side, batch {s.batch:,}; lag: "
        f"{s.rate}/s for {s.seconds} s; cache: {s.queries:,} queries per side in {s.rounds} "
        f"rounds after {s.warmup} warm-up"
    )
    print("  ratio = baseline_time / sdk_time: >1 means the SDK is faster; goal >= 0.8", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    settings, env = isolated_settings(relay=options.relay)
    try:
        describe(settings, options)
        eventloop.run(run(settings, options))  # both sides: the loop `banyan` commands run on
    finally:
        asyncio.run(cleanup(settings, env))


if __name__ == "__main__":
    main()
