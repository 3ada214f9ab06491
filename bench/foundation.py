"""The foundation against hand-written baselines: command round trips and event appends.

    .venv/bin/python -m bench.foundation            # about 3 minutes
    .venv/bin/python -m bench.foundation --quick    # about 30 seconds

(a) PlaceOrder through the SDK (the `orders` example service, in-process) versus the same work
    by hand with aio-pika + asyncpg; both called through one raw direct reply-to client.
(b) `EventStore.append` (one event, concurrent, batches) versus plain asyncpg INSERTs.

Both sides do the same work: the SDK's event relay and the orders read model are off unless
--relay / --projections are given (the baselines have neither), and so is the announcement to
discovery. The run gets its own RabbitMQ vhost and PostgreSQL schemas (like the tests), dropped
at the end, also on failure.
"""

import argparse
import asyncio
import copy
import os
import sys
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any

from bench.baseline import (
    BaselineAppender,
    RawRpcClient,
    create_pool,
    create_schema,
    drop_schema,
    start_baseline_orders,
)
from bench.common import GOAL, Comparison, Op, compare, print_summary
from bench.environment import isolated_settings
from pipelines import eventloop
from pipelines.database import create_pool as sdk_pool
from pipelines.database import migrate
from pipelines.eventstore import EventStore, NewEvent
from pipelines.identity import Caller, TokenCodec
from pipelines.instance import ServiceInstance
from pipelines.settings import Settings
from pipelines.testing.isolation import drop_isolated_env
from pipelines.topology import request_queue_name

ORDER = b'{"customerId":"bench-customer","items":[{"sku":"apple","quantity":3,"unitPrice":"1.50"}]}'
EVENT_DATA = '{"orderId":"o-1","customerId":"bench-customer","total":"4.50"}'
EVENT_META = {"service": "bench", "messageType": "Bench"}
BASELINE_QUEUE = "bench.baseline.commands.PlaceOrder"


@dataclass(frozen=True)
class Sizes:
    rounds: int = 10  # alternating SDK/baseline rounds per comparison
    warmup: int = 300  # operations per side before measuring
    requests: int = 2000  # sequential PlaceOrder round trips per side
    concurrent_requests: int = 4000  # PlaceOrder round trips per side, `in_flight` at a time
    in_flight: int = 32
    appends: int = 3000  # sequential single-event appends per side
    concurrent_appends: int = 10000  # single-event appends per side, `append_tasks` at a time
    append_tasks: int = 16
    batches: int = 300  # sequential batch appends per side
    batch_size: int = 100


QUICK = Sizes(
    rounds=6,
    warmup=100,
    requests=400,
    concurrent_requests=1500,
    appends=600,
    concurrent_appends=2000,
    batches=60,
)


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    relay: bool
    projections: bool
    only: str | None


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.foundation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about 30 s)")
    parser.add_argument(
        "--relay",
        action="store_true",
        help="run the SDK's event relay during (a); the baseline has none",
    )
    parser.add_argument(
        "--projections",
        action="store_true",
        help="run the orders read model during (a); the baseline keeps none",
    )
    parser.add_argument("--only", choices=["commands", "appends"], help="run one part")
    for f in fields(Sizes):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=int,
            metavar="N",
            help=f"default {f.default}, quick {getattr(QUICK, f.name)}",
        )
    args = parser.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name) is not None
    }
    sizes = replace(QUICK if args.quick else Sizes(), **overrides)
    return Options(sizes, args.relay, args.projections, args.only)


# --- (a) commands -----------------------------------------------------------------------------


def command_op(client: RawRpcClient, queue: str, headers: dict[str, Any]) -> Op:
    async def op() -> None:
        reply = await client.call(queue, ORDER, headers)
        got = reply.headers or {}
        if got.get("x-status") != "ok" or got.get("x-event-position") is None:
            raise RuntimeError(f"{queue} failed: {reply.body[:300]!r}")

    return op


def orders_instance(settings: Settings, projections: bool) -> ServiceInstance:
    """The orders example; without its read model unless asked (the baseline keeps none)."""
    from examples.orders import service  # builds its app from the environment: import late

    if not projections:
        service = copy.copy(service)
        service.projections = []
    return service.instance(settings)


async def bench_commands(
    settings: Settings, baseline_schema: str, options: Options, stack: AsyncExitStack
) -> list[Comparison]:
    from examples.orders.contracts import PlaceOrder

    sizes = options.sizes
    instance = orders_instance(settings, options.projections)
    stack.push_async_callback(instance.stop)
    await instance.start()
    client = await start_baseline_orders(settings, baseline_schema, BASELINE_QUEUE, stack)

    token = TokenCodec(settings).issue(
        Caller("bench-customer", permissions=frozenset({"orders:place"})), ttl=24 * 3600
    )
    headers = {
        "x-user-token": token,
        "x-message-type": "PlaceOrder",
        "x-service-name": "bench",
        "x-retry-count": 0,
    }
    sdk = command_op(client, request_queue_name("orders", PlaceOrder), headers)
    hand = command_op(client, BASELINE_QUEUE, headers)
    measure = partial(compare, sdk=sdk, baseline=hand, rounds=sizes.rounds, warmup=sizes.warmup)
    return [
        await measure("(a) PlaceOrder round trip, sequential", count=sizes.requests),
        await measure(
            f"(a) PlaceOrder round trip, {sizes.in_flight} in flight",
            count=sizes.concurrent_requests,
            concurrency=sizes.in_flight,
        ),
    ]


# --- (b) appends ------------------------------------------------------------------------------


def sdk_append_ops(store: EventStore, batch_size: int) -> tuple[Op, Op]:
    def event(aggregate_id: str, version: int) -> NewEvent:
        return NewEvent(
            aggregate_type="Bench",
            aggregate_id=aggregate_id,
            version=version,
            event_type="BenchHappened",
            data=EVENT_DATA,
            metadata=EVENT_META,
        )

    async def one() -> None:
        await store.append([event(uuid.uuid4().hex, 1)])

    async def batch() -> None:
        aggregate_id = uuid.uuid4().hex
        await store.append([event(aggregate_id, v) for v in range(1, batch_size + 1)])

    return one, batch


def baseline_append_ops(appender: BaselineAppender, batch_size: int) -> tuple[Op, Op]:
    data = [EVENT_DATA] * batch_size

    async def one() -> None:
        await appender.append_one(uuid.uuid4().hex, "BenchHappened", EVENT_DATA, EVENT_META)

    async def batch() -> None:
        await appender.append_batch(uuid.uuid4().hex, "BenchHappened", data, EVENT_META)

    return one, batch


async def bench_appends(
    settings: Settings, baseline_schema: str, sizes: Sizes, stack: AsyncExitStack
) -> list[Comparison]:
    size = max(sizes.append_tasks, 2)
    pool = await sdk_pool(settings, size)
    stack.push_async_callback(pool.close)
    raw_pool = await create_pool(settings.database_url, baseline_schema, size)
    stack.push_async_callback(raw_pool.close)
    sdk_one, sdk_batch = sdk_append_ops(EventStore(pool), sizes.batch_size)
    raw_one, raw_batch = baseline_append_ops(BaselineAppender(raw_pool), sizes.batch_size)
    measure = partial(compare, rounds=sizes.rounds, unit="events")
    return [
        await measure(
            "(b) append 1 event, sequential",
            sdk_one,
            raw_one,
            count=sizes.appends,
            warmup=sizes.warmup,
        ),
        await measure(
            f"(b) append 1 event, {sizes.append_tasks} tasks",
            sdk_one,
            raw_one,
            count=sizes.concurrent_appends,
            warmup=sizes.warmup,
            concurrency=sizes.append_tasks,
        ),
        await measure(
            f"(b) append {sizes.batch_size} events/batch, sequential",
            sdk_batch,
            raw_batch,
            count=sizes.batches,
            warmup=max(1, sizes.warmup // 10),
            items_per_op=sizes.batch_size,
        ),
    ]


# --- the run ----------------------------------------------------------------------------------


async def run(settings: Settings, baseline_schema: str, options: Options) -> None:
    await migrate(settings)
    await create_schema(settings.database_url, baseline_schema, settings.database_schema)
    results: list[Comparison] = []
    if options.only in (None, "commands"):
        async with AsyncExitStack() as stack:
            results += await bench_commands(settings, baseline_schema, options, stack)
    if options.only in (None, "appends"):
        async with AsyncExitStack() as stack:
            results += await bench_appends(settings, baseline_schema, options.sizes, stack)
    print_summary(results)


async def cleanup(env: dict[str, str], dsn: str, baseline_schema: str) -> None:
    try:
        await drop_schema(dsn, baseline_schema)
    finally:
        await drop_isolated_env(env)


def describe(settings: Settings, options: Options, baseline_schema: str) -> None:
    s = options.sizes
    print("Banyan foundation benchmark: SDK vs hand-written (aio-pika + asyncpg)")
    print(
        f"  vhost {os.environ.get('BANYAN_TEST_VHOST', '(default)')}, schemas "
        f"{settings.database_schema} (SDK) / {baseline_schema} (baseline)"
    )
    print(
        f"  {s.rounds} alternating rounds, {s.warmup} warm-up ops per side; prefetch "
        f"{settings.prefetch_count}, pool {settings.database_pool_size}; SDK relay "
        f"{_on(options.relay)}, orders read model {_on(options.projections)}"
    )
    print(
        f"  ratio = baseline_time / sdk_time: >1 means the SDK is faster; goal >= {GOAL}",
        flush=True,
    )


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    settings, env = isolated_settings(relay=options.relay)
    baseline_schema = f"{settings.database_schema}_baseline"
    try:
        describe(settings, options, baseline_schema)
        eventloop.run(run(settings, baseline_schema, options))  # both sides: Banyan's loop
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        asyncio.run(cleanup(env, settings.database_url, baseline_schema))


if __name__ == "__main__":
    main()
