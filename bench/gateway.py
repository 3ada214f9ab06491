"""The gateway end to end over HTTP against hand-written baselines, and its RPC against FastStream.

    .venv/bin/python -m bench.gateway            # about 3 minutes
    .venv/bin/python -m bench.gateway --quick    # about 40 seconds (on a quiet machine)

(a) `POST /api/orders/place-order` with a real token: the gateway -> RabbitMQ -> the orders
    service (SDK) -> PostgreSQL -> reply, versus a bare ASGI app (PyJWT, aio-pika direct
    reply-to, awaited by correlation id) -> the hand-written orders service (aio-pika, asyncpg).
(b) `GET /api/orders/get-order` answered from the gateway's Redis cache (one warm-up request
    fills it), versus the bare ASGI app answering with a Redis GET of a key.
    Both sides count each request against the caller's rate limit in Redis, in the same round
    trip as the cache read (a Lua script: INCR, EXPIRE, GET), and for (a) in one of its own.
    (a) and (b) at 1, 16 and 64 concurrent clients, each with its own httpx client (the same
    for both sides); both apps are served by uvicorn in this process, which binds their
    sockets as `uvicorn gateway:app` does.
(c) 64 concurrent callers: the gateway's RpcClient (many requests in flight) versus
    FastStream's `RabbitBroker.request` (one at a time: it holds a broker-wide lock for the
    whole round trip), both calling the orders service's PlaceOrder, then both calling a
    handler that waits 20 ms (the sample service's Dawdle, prefetch 64).

Both sides do the same work: no event relay, no discovery announcements, no rate limit that
could refuse (both still count each request in Redis); the orders read model runs only
during (b), where it answers the warm-up request. Counts are paced by time: a warm-up of each
side measures its pace. The run gets its own RabbitMQ vhost, PostgreSQL schemas and Redis
prefix, dropped at the end, also on failure.
"""

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import ssl
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import redis.asyncio as aioredis
import uvicorn
from faststream.rabbit import RabbitBroker
from starlette.types import Receive, Scope, Send

from bench.baseline import RawRpcClient, create_schema, start_baseline_orders
from bench.common import (
    GOAL,
    Comparison,
    Goal,
    Op,
    add_size_options,
    chosen_sizes,
    compare,
    print_goals,
    print_summary,
    timed_count,
)
from bench.environment import isolated_settings
from bench.foundation import BASELINE_QUEUE, ORDER, cleanup, orders_instance
from pipelines import eventloop
from pipelines import headers as h
from pipelines.database import migrate
from pipelines.identity import Caller, TokenCodec
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from pipelines.topology import queue_for
from tests.sample import service as sample_service

CLIENTS = (1, 16, 64)
RPC_CALLERS = 64
RPC_GOAL = 10.0  # the gateway's RPC against FastStream's serialized request
COMMAND_P50_MS = 5.0  # a command through the gateway at 1 client
UNLIMITED = 1_000_000_000  # requests per minute: the bench must never be rate limited
KEEP_ALIVE = 600  # seconds: idle client connections must survive between comparisons
JSON = [(b"content-type", b"application/json")]
RATE_WINDOW = 60  # seconds
# the bare app's rate limit: count the caller's request in this window, and read the cache
COUNT_AND_GET = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if KEYS[2] == nil then return {count} end
return {count, redis.call('GET', KEYS[2])}
"""


@dataclass(frozen=True)
class Sizes:
    rounds: int = 8  # alternating SDK/baseline rounds per HTTP comparison
    seconds: float = 5.0  # measured time per side and comparison, about (the slower side's)
    probe: int = 3  # warm-up requests per client and side (at least MIN_PROBE), to pace counts
    rpc_rounds: int = 4  # rounds of the RPC comparisons: each of at least 64 requests


QUICK = Sizes(rounds=2, seconds=1.0, probe=1, rpc_rounds=2)
MIN_PROBE = 30


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    only: str | None
    profile: str | None


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about 40 s)")
    parser.add_argument("--only", choices=["commands", "queries", "rpc"], help="run one part")
    parser.add_argument(
        "--profile", metavar="FILE", help="run under cProfile, save the stats to FILE"
    )
    add_size_options(parser, Sizes(), QUICK)
    args = parser.parse_args(argv)
    return Options(chosen_sizes(args, QUICK if args.quick else Sizes()), args.only, args.profile)


# --- the hand-written side ---------------------------------------------------------------------


class Rejected(Exception):
    """An HTTP error answer of the bare app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


class BareGateway:
    """The gateway's two hot paths by hand: a raw ASGI app, PyJWT, aio-pika, redis."""

    def __init__(self, rpc: RawRpcClient, redis: aioredis.Redis, secret: str, prefix: str):
        self.rpc, self.redis, self.secret, self.prefix = rpc, redis, secret, prefix
        self._count_and_get = redis.register_script(COUNT_AND_GET)

    def cache_key(self, order_id: str) -> str:
        return f"{self.prefix}:bare:order:{order_id}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, body, headers = await self._answer(scope, receive)
        except Rejected as exc:
            status, body, headers = exc.status, json.dumps({"error": str(exc)}).encode(), []
        headers += [*JSON, (b"x-correlation-id", uuid.uuid4().hex.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        path, method = scope["path"], scope["method"]
        if (method, path) == ("POST", "/place-order"):
            token, user = self._verify(scope, "orders:place")
            await self._count(user)
            return await self._place(token, await _body(receive))
        if (method, path) == ("GET", "/get-order"):
            _, user = self._verify(scope, "orders:read")
            order_id = parse_qs(scope["query_string"].decode()).get("orderId", [""])[-1]
            return self._cached(await self._count(user, self.cache_key(order_id)))
        raise Rejected(404, "not found")

    async def _count(self, user: str, *keys: str) -> list[Any]:
        """Count the request against the user's limit; read `keys` in the same round trip."""
        window = int(time.time()) // RATE_WINDOW
        rate_key = f"{self.prefix}:bare:rl:{user}:{window}"
        reply: list[Any] = await self._count_and_get(keys=[rate_key, *keys], args=[RATE_WINDOW + 1])
        if int(reply[0]) > UNLIMITED:
            raise Rejected(429, "too many requests")
        return reply

    def _verify(self, scope: Scope, permission: str) -> tuple[str, str]:
        raw: bytes = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = raw.decode().partition(" ")
        if scheme.lower() != "bearer":
            raise Rejected(401, "bearer token required")
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
            )
        except jwt.PyJWTError as exc:
            raise Rejected(401, f"invalid token: {exc}") from exc
        if permission not in claims.get("permissions", ()):
            raise Rejected(403, f"requires {permission}")
        return token, str(claims["sub"])

    async def _place(self, token: str, body: bytes) -> Answer:
        try:
            if not isinstance(json.loads(body), dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise Rejected(400, f"invalid body: {exc}") from exc
        headers = {h.USER_TOKEN: token, h.MESSAGE_TYPE: "PlaceOrder", h.SERVICE_NAME: "bare"}
        reply = await self.rpc.call(BASELINE_QUEUE, body, {**headers, h.RETRY_COUNT: 0})
        got = reply.headers or {}
        if got.get(h.STATUS) != "ok":
            return 400, reply.body, []
        return 200, reply.body, [(b"x-event-position", str(got[h.EVENT_POSITION]).encode())]

    @staticmethod
    def _cached(reply: list[Any]) -> Answer:
        value = reply[1]
        if value is None:
            raise Rejected(404, "no such order")
        return 200, value.encode() if isinstance(value, str) else value, []


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


# --- both sides, served -------------------------------------------------------------------------


class Clients:
    """One httpx client per concurrent caller, the same for both sides: a single shared client
    costs several times more CPU per request as its connection pool grows."""

    def __init__(self, count: int) -> None:
        tls = ssl.create_default_context()  # one for all: loading the CA store takes a while
        self._all = [httpx.AsyncClient(timeout=30, verify=tls) for _ in range(count)]
        self._idle = list(self._all)

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        client = self._idle.pop()
        try:
            return await client.request(method, url, **kw)
        finally:
            self._idle.append(client)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._all))


@dataclass(frozen=True)
class Rig:
    settings: Settings
    client: Clients
    gateway: str  # base URLs
    bare: str
    bare_app: BareGateway
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def serve(app: Any, stack: AsyncExitStack) -> str:
    """Serve `app` as `uvicorn gateway:app` does: uvicorn binds the socket (TCP_NODELAY)."""
    config = uvicorn.Config(
        app,
        "127.0.0.1",
        0,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    stack.push_async_callback(_stop, server, task)
    while not server.started:
        if task.done():
            await task  # raises why it could not start
        await asyncio.sleep(0.01)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


async def _stop(server: uvicorn.Server, task: "asyncio.Task[None]") -> None:
    server.should_exit = True
    await task


async def start_gateway(settings: Settings, stack: AsyncExitStack) -> str:
    from examples.orders import service  # builds its app from the environment: import late
    from gateway.app import create_app
    from gateway.registry import from_services

    app = create_app(settings.model_copy(update={"rate_limit_per_user": UNLIMITED}),
                     from_services([service]))  # fmt: skip
    await app.state.gateway.start()
    stack.push_async_callback(app.state.gateway.stop)
    return await serve(app, stack)


async def start_bare(
    settings: Settings, baseline_schema: str, stack: AsyncExitStack
) -> BareGateway:
    rpc = await start_baseline_orders(settings, baseline_schema, BASELINE_QUEUE, stack)
    redis = aioredis.from_url(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    return BareGateway(rpc, redis, settings.jwt_secret, settings.cache_prefix)


async def start_rig(settings: Settings, baseline_schema: str, stack: AsyncExitStack) -> Rig:
    gateway = await start_gateway(settings, stack)
    bare_app = await start_bare(settings, baseline_schema, stack)
    bare = await serve(bare_app, stack)
    client = Clients(max(CLIENTS))
    stack.push_async_callback(client.aclose)
    permissions = frozenset({"orders:place", "orders:read"})
    token = TokenCodec(settings).issue(Caller("bench-customer", permissions=permissions), 86400)
    return Rig(settings, client, gateway, bare, bare_app, token)


def http_op(rig: Rig, method: str, url: str, expect: Mapping[str, str | None], **kw: Any) -> Op:
    """One request; fails unless the answer is 200 with the `expect`ed headers (None: any)."""
    headers = {**rig.auth, **kw.pop("headers", {})}

    async def op() -> None:
        response = await rig.client.request(method, url, headers=headers, **kw)
        got = response.headers
        if response.status_code != 200 or any(
            name not in got or value not in (None, got[name]) for name, value in expect.items()
        ):
            raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")

    return op


async def measure(
    name: str, sdk: Op, baseline: Op, concurrency: int, rounds: int, sizes: Sizes
) -> Comparison:
    """Warm both sides up while timing them, then compare them for about `sizes.seconds`
    each; every round starts with all `concurrency` callers busy."""
    probe = max(sizes.probe * concurrency, MIN_PROBE)
    count = await timed_count([sdk, baseline], concurrency, probe, sizes.seconds)
    return await compare(
        name,
        sdk,
        baseline,
        count=max(count, rounds * concurrency),
        rounds=rounds,
        warmup=0,
        concurrency=concurrency,
    )


async def at_each_concurrency(name: str, sdk: Op, baseline: Op, sizes: Sizes) -> list[Comparison]:
    return [
        await measure(
            f"{name}, {clients} client{'s' if clients > 1 else ''}",
            sdk,
            baseline,
            clients,
            sizes.rounds,
            sizes,
        )
        for clients in CLIENTS
    ]


# --- (a) commands, (b) cached queries, (c) RPC --------------------------------------------------


async def bench_commands(rig: Rig, sizes: Sizes) -> list[Comparison]:
    body = {"content": ORDER, "headers": {**rig.auth, "Content-Type": "application/json"}}
    position = {"x-event-position": None}
    return await at_each_concurrency(
        "(a) POST place-order",
        http_op(rig, "POST", f"{rig.gateway}/api/orders/place-order", position, **body),
        http_op(rig, "POST", f"{rig.bare}/place-order", position, **body),
        sizes,
    )


async def warm_cache(rig: Rig) -> str:
    """Place an order, read it once through the gateway (which caches the answer), and give
    the bare app the same answer under its key. Returns the order id."""
    placed = await rig.client.request(
        "POST",
        f"{rig.gateway}/api/orders/place-order",
        content=ORDER,
        headers={**rig.auth, "Content-Type": "application/json"},
    )
    placed.raise_for_status()
    order_id: str = placed.json()["orderId"]
    first = await rig.client.request(
        "GET",
        f"{rig.gateway}/api/orders/get-order",
        params={"orderId": order_id},
        headers={**rig.auth, "X-Min-Position": placed.headers["X-Event-Position"]},
    )
    first.raise_for_status()
    await rig.bare_app.redis.set(rig.bare_app.cache_key(order_id), first.content)
    return order_id


async def bench_queries(rig: Rig, sizes: Sizes) -> list[Comparison]:
    params = {"params": {"orderId": await warm_cache(rig)}}
    return await at_each_concurrency(
        "(b) GET get-order, cached",
        http_op(rig, "GET", f"{rig.gateway}/api/orders/get-order", {"x-cache": "hit"}, **params),
        http_op(rig, "GET", f"{rig.bare}/get-order", {}, **params),
        sizes,
    )


@dataclass(frozen=True)
class RpcTarget:
    label: str
    queue: str
    body: bytes
    goal: float | None = None  # RPC_GOAL where FastStream's lock is what the ratio measures


def rpc_ops(target: RpcTarget, rpc: RpcClient, broker: RabbitBroker, token: str) -> tuple[Op, Op]:
    """The same request through the gateway's RpcClient and through FastStream's broker."""
    headers: dict[str, Any] = {h.MESSAGE_TYPE: target.queue.rsplit(".", 1)[-1], h.USER_TOKEN: token}

    async def ours() -> None:
        response = await rpc.request(target.queue, target.body, headers=headers)
        if not response.ok:
            raise RuntimeError(f"{target.queue}: {response.body[:300]!r}")

    async def faststream() -> None:
        reply = await broker.request(
            target.body, queue=target.queue, headers=headers, persist=True, timeout=30
        )
        if reply.headers.get(h.STATUS, "ok") != "ok":
            raise RuntimeError(f"{target.queue}: {reply.body[:300]!r}")

    return ours, faststream


DAWDLE_SECONDS = 0.02
RPC_TARGETS = (
    RpcTarget("orders PlaceOrder", queue_for("orders", "command", "PlaceOrder"), ORDER),
    RpcTarget(
        f"sample Dawdle {DAWDLE_SECONDS * 1000:g} ms",
        queue_for("sample", "command", "Dawdle"),
        json.dumps({"seconds": DAWDLE_SECONDS}).encode(),
        RPC_GOAL,  # PlaceOrder's pace is the orders service's own, waiting the handler's
    ),
)


async def bench_rpc(rig: Rig, sizes: Sizes, stack: AsyncExitStack) -> list[Comparison]:
    settings = rig.settings
    sample = sample_service.instance(settings.model_copy(update={"prefetch_count": RPC_CALLERS}))
    stack.push_async_callback(sample.stop)
    await sample.start()
    rpc = await RpcClient(settings.rabbitmq_url, service_name="bench").connect()
    stack.push_async_callback(rpc.close)
    broker = RabbitBroker(settings.rabbitmq_url, logger=None)
    await broker.connect()
    stack.push_async_callback(broker.stop)
    results = []
    for target in RPC_TARGETS:
        ours, faststream = rpc_ops(target, rpc, broker, rig.token)
        results.append(
            await measure(rpc_name(target), ours, faststream, RPC_CALLERS, sizes.rpc_rounds, sizes)
        )
    return results


def rpc_name(target: RpcTarget) -> str:
    return f"(c) RPC to {target.label}, {RPC_CALLERS} callers"


# --- the run -----------------------------------------------------------------------------------


def goals(results: list[Comparison]) -> list[Goal]:
    found = []
    for c in results:
        if c.name.startswith("(a)") and c.concurrency == 1:
            found.append(Goal("command p50 through the gateway, 1 client", c.sdk.median_ms,
                              COMMAND_P50_MS, " ms", at_most=True))  # fmt: skip
    measured = {c.name: c for c in results}  # no RPC ones when --only leaves them out
    for target in RPC_TARGETS:
        rpc = measured.get(rpc_name(target))
        if target.goal is not None and rpc is not None:
            found.append(Goal(f"RpcClient / FastStream request throughput, {target.label}",
                              rpc.throughput_ratio, target.goal, "x"))  # fmt: skip
    return found


async def run(settings: Settings, baseline_schema: str, options: Options) -> None:
    await migrate(settings)
    await create_schema(settings.database_url, baseline_schema, settings.database_schema)
    results: list[Comparison] = []
    parts = [options.only] if options.only else ["queries", "commands", "rpc"]
    async with AsyncExitStack() as stack:
        rig = await start_rig(settings, baseline_schema, stack)
        if "queries" in parts:  # the read model answers the warm-up request
            async with AsyncExitStack() as orders:
                await start_orders(settings, True, orders)
                results += await bench_queries(rig, options.sizes)
        await start_orders(settings, False, stack)
        if "commands" in parts:
            results += await bench_commands(rig, options.sizes)
        if "rpc" in parts:
            results += await bench_rpc(rig, options.sizes, stack)
    print_summary(results)
    print_goals(goals(results))


async def start_orders(settings: Settings, projections: bool, stack: AsyncExitStack) -> None:
    instance = orders_instance(settings, projections)
    stack.push_async_callback(instance.stop)
    await instance.start()


async def forget_keys(settings: Settings) -> None:
    """Drop this run's Redis keys (cached answers, counters, rate limits)."""
    redis = aioredis.from_url(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(f"{settings.cache_prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def describe(settings: Settings, options: Options, baseline_schema: str) -> None:
    s = options.sizes
    print("Banyan gateway benchmark: gateway vs hand-written (bare ASGI + aio-pika + asyncpg)")
    print(
        f"  vhost {os.environ.get('BANYAN_TEST_VHOST', '(default)')}, schemas "
        f"{settings.database_schema} (SDK) / {baseline_schema} (baseline), Redis prefix "
        f"{settings.cache_prefix}"
    )
    print(
        f"  {s.rounds} alternating rounds ({s.rpc_rounds} for RPC), about {s.seconds:g} s per "
        f"side and comparison after {s.probe} warm-up requests per client; clients "
        f"{', '.join(map(str, CLIENTS))}; prefetch {settings.prefetch_count}, pool "
        f"{settings.database_pool_size}"
    )
    print(
        f"  (c): SDK = the gateway's RpcClient, hand-written = FastStream's broker.request; the "
        f"sample service's Dawdle waits {DAWDLE_SECONDS * 1000:g} ms, prefetch {RPC_CALLERS}"
    )
    print(
        f"  ratio = baseline_time / sdk_time: >1 means the SDK is faster; goal >= {GOAL}",
        flush=True,
    )


def profiled(path: str, main: Any) -> None:
    profiler = cProfile.Profile()
    try:
        profiler.runcall(main)
    finally:
        profiler.dump_stats(path)
        print(f"\ncProfile stats in {path}; the 25 largest own times:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    settings, env = isolated_settings(relay=False)
    baseline_schema = f"{settings.database_schema}_baseline"

    def go() -> None:
        eventloop.run(run(settings, baseline_schema, options))  # both sides: Banyan's loop

    try:
        describe(settings, options, baseline_schema)
        if options.profile:
            profiled(options.profile, go)
        else:
            go()
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        asyncio.run(forget_keys(settings))
        asyncio.run(cleanup(env, settings.database_url, baseline_schema))


if __name__ == "__main__":
    main()
