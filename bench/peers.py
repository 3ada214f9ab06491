"""Banyan against the libraries users would pick instead, side by side in one run.

    .venv/bin/python -m bench.peers            # about 3 minutes
    .venv/bin/python -m bench.peers --quick    # about a minute

(a) The `eventsourcing` library (its PostgreSQL application recorder, psycopg 3) against
    Banyan's `EventStore` on the same PostgreSQL database, each with its own log table:
    appends of one event by 16 concurrent writers (theirs on 16 threads, as its synchronous
    API is used), of 100-event batches by one writer and by 16, and a read of the whole log in
    pages of 1,000 (theirs `select_notifications`, each event as it comes, the state bytes
    undecoded; ours `EventStore.pages`, each event decoded: data and metadata as dicts, the
    next page asked for while one is decoded). Both logs hold
    the same events for the read: the generated `orders` log (bench.orderlog), copied into
    theirs with its JSON as the state.
(b) 64 concurrent callers of a handler that waits 20 ms: Banyan's RpcClient against
    FastStream's `RabbitBroker.request`.

Ratios are the peer's time / Banyan's (above 1: Banyan is faster). The run gets its own
RabbitMQ vhost and PostgreSQL schemas, dropped at the end. Once set up, the run sets the
garbage collector as every platform process does once started (`tune_collector`: the startup
heap frozen, the youngest generation collected every 10,000 allocations), for both sides:
they read into millions of short-lived objects, whose collections would otherwise measure
the size of the process and the interpreter's defaults rather than the libraries.
"""

import argparse
import asyncio
import gc
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from time import perf_counter, process_time

import asyncpg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from faststream.rabbit import RabbitBroker
from yarl import URL

from bench import orderlog
from bench.common import (
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
from bench.gateway import DAWDLE_SECONDS, RPC_CALLERS, RPC_GOAL, RPC_TARGETS, rpc_ops
from bench.proccpu import postgres_cpu_seconds
from bench.projections import drop_schema
from pipelines import eventloop
from pipelines.collector import tune_collector
from pipelines.database import connect, create_pool, migrate
from pipelines.eventstore import EventStore, NewEvent
from pipelines.identity import Caller, TokenCodec
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from pipelines.testing.isolation import drop_isolated_env
from tests.sample import service as sample_service

THEM = {peer: ("Banyan", peer) for peer in ("eventsourcing", "FastStream")}  # as printed
READ_GOAL = 1.5  # reading the whole log: Banyan at least this much faster
PAGE = 1000
WRITERS = 16
BATCH = 100
DATA = (
    '{"orderId": "%s", "customerId": "customer-7", "items": [{"sku": "sku-1", "quantity": 2, '
    '"unitPrice": "9.99"}, {"sku": "sku-2", "quantity": 1, "unitPrice": "4.50"}], '
    '"total": "24.48"}'
)
METADATA = {"service": "orders"}
# their table, filled with our generated log: aggregate ids are uuids (md5 of the order)
COPY_LOG = (
    'INSERT INTO "{theirs}".stored_events (originator_id, originator_version, topic, state) '
    "SELECT aggregate_id::uuid, version, event_type, convert_to(data::text, 'UTF8') "
    'FROM "{ours}".events ORDER BY position'
)


@dataclass(frozen=True)
class Sizes:
    events: int = 200_000  # in each log for the read
    reads: int = 6  # whole-log reads per side, alternating
    appends: int = 4000  # single-event appends per side (16 writers)
    batches: int = 300  # 100-event batches per side and writer count
    rounds: int = 6  # alternating rounds of appends
    rpc_seconds: float = 5.0  # about, per side
    rpc_rounds: int = 4


QUICK = Sizes(
    events=50_000, reads=4, appends=1600, batches=96, rounds=2, rpc_seconds=1.5, rpc_rounds=2
)


def parse_args(argv: Sequence[str] | None) -> tuple[Sizes, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", choices=["log", "rpc"], help="run one part")
    add_size_options(parser, Sizes(), QUICK)
    args = parser.parse_args(argv)
    return chosen_sizes(args, QUICK if args.quick else Sizes()), args.only


# --- (a) the eventsourcing library --------------------------------------------------------------


def their_schema(settings: Settings) -> str:
    return f"{settings.database_schema}_eventsourcing"


def their_recorder(settings: Settings) -> PostgresApplicationRecorder:
    """eventsourcing's recorder on the same database, a connection per writer."""
    url = URL(settings.database_url)
    datastore = PostgresDatastore(
        (url.path or "/postgres").lstrip("/") or "postgres",
        url.host or "127.0.0.1",
        url.port or 5432,
        url.user or "postgres",
        url.password or "",
        schema=their_schema(settings),
        pool_size=WRITERS,
    )
    recorder = PostgresApplicationRecorder(datastore, events_table_name="stored_events")
    recorder.create_table()
    return recorder


async def fill_logs(settings: Settings, conn: asyncpg.Connection, events: int) -> None:
    """The same generated log in both tables."""
    started = perf_counter()
    await orderlog.generate(conn, events, settings.database_schema)
    await conn.execute(
        COPY_LOG.format(theirs=their_schema(settings), ours=settings.database_schema)
    )
    await conn.execute(f'VACUUM ANALYZE "{their_schema(settings)}".stored_events')
    print(f"\n{events:,} events in each log in {perf_counter() - started:.1f} s", flush=True)


def read_ops(
    pool: asyncpg.Pool, conn: asyncpg.Connection, recorder: PostgresApplicationRecorder, total: int
) -> tuple[Op, Op]:
    """The whole log in pages of PAGE, on one connection each."""

    async def ours() -> None:
        count = 0
        async for page, _ in EventStore(pool).pages(0, PAGE, conn=conn):
            count += sum(1 for event in page if event.data is not None)
        check_count("Banyan", count, total)

    async def theirs() -> None:
        start, count = 1, 0
        while True:
            page = recorder.select_notifications(start, PAGE)
            count += len(page)
            if len(page) < PAGE:
                break
            start = page[-1].id + 1
        check_count("eventsourcing", count, total)

    return ours, theirs


@dataclass(frozen=True)
class ReadCpu:
    """CPU time per event read, in µs: this process's and PostgreSQL's (None: not visible)."""

    own: float
    server: float | None


async def read_cpu(sides: dict[str, Op], reads: int, events: int) -> dict[str, ReadCpu]:
    """Each side's CPU per event over `reads` whole-log reads, alternating: on two cores the
    reader and the server overlap, so wall times alone hide what either costs."""
    own, served = dict.fromkeys(sides, 0.0), dict.fromkeys(sides, 0.0)
    visible = postgres_cpu_seconds() is not None
    for number in range(reads):
        for name, op in sides.items() if number % 2 == 0 else reversed(sides.items()):
            started, serving = process_time(), postgres_cpu_seconds() or 0.0
            await op()
            own[name] += process_time() - started
            served[name] += (postgres_cpu_seconds() or 0.0) - serving
    per_event = 1e6 / (reads * events)
    return {
        name: ReadCpu(own[name] * per_event, served[name] * per_event if visible else None)
        for name in sides
    }


def print_read_cpu(cpu: dict[str, ReadCpu], reads: int) -> None:
    def side(name: str, used: ReadCpu) -> str:
        served = "?" if used.server is None else f"{used.server:.2f}"
        return f"{name} {used.own:.2f} µs here + {served} µs in PostgreSQL"

    print(f"  CPU per event read ({reads} reads per side): "
          + "; ".join(side(name, used) for name, used in cpu.items()), flush=True)  # fmt: skip


def check_count(who: str, count: int, total: int) -> None:
    if count != total:
        raise RuntimeError(f"{who} read {count:,} events of {total:,}")


def append_ops(
    store: EventStore, recorder: PostgresApplicationRecorder, size: int, threads: ThreadPoolExecutor
) -> tuple[Op, Op]:
    """Append `size` events of a new aggregate: ours in this loop, theirs on a thread."""

    async def ours() -> None:
        order = uuid.uuid4()
        data = DATA % order
        await store.append(
            [
                NewEvent("Order", str(order), v, "OrderPlaced", data, METADATA)
                for v in range(1, size + 1)
            ]
        )

    def insert() -> None:
        order = uuid.uuid4()
        state = (DATA % order).encode()
        recorder.insert_events(
            [StoredEvent(order, v, "OrderPlaced", state) for v in range(1, size + 1)]
        )

    async def theirs() -> None:
        await asyncio.get_running_loop().run_in_executor(threads, insert)

    return ours, theirs


async def bench_log(settings: Settings, sizes: Sizes, stack: AsyncExitStack) -> list[Comparison]:
    await migrate(settings)
    async with AsyncExitStack() as setup:
        admin = await asyncpg.connect(settings.database_url)
        setup.push_async_callback(admin.close)
        await admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{their_schema(settings)}"')
    stack.push_async_callback(drop_schema, settings.database_url, their_schema(settings))
    recorder = their_recorder(settings)
    stack.callback(recorder.datastore.close)
    threads = ThreadPoolExecutor(WRITERS)
    stack.callback(threads.shutdown)
    pool = await create_pool(settings, WRITERS)
    stack.push_async_callback(pool.close)
    conn = await connect(settings)
    stack.push_async_callback(conn.close)
    await fill_logs(settings, conn, sizes.events)
    thresholds = gc.get_threshold()
    tune_collector()
    stack.callback(gc.set_threshold, *thresholds)
    ours, theirs = read_ops(pool, conn, recorder, sizes.events)
    results = [
        await compare(
            f"(a) read the whole log, {sizes.events:,} events in pages of {PAGE:,}",
            ours,
            theirs,
            count=sizes.reads,
            rounds=sizes.reads,
            warmup=1,
            items_per_op=sizes.events,
            unit="events",
            scored=False,  # its goal is READ_GOAL
            labels=THEM["eventsourcing"],
        )
    ]
    cpu = await read_cpu({"Banyan": ours, "eventsourcing": theirs}, sizes.reads, sizes.events)
    print_read_cpu(cpu, sizes.reads)
    store = EventStore(pool)
    measure = partial(compare, rounds=sizes.rounds, unit="events", scored=False,
                      labels=THEM["eventsourcing"])  # fmt: skip
    one, their_one = append_ops(store, recorder, 1, threads)
    batch, their_batch = append_ops(store, recorder, BATCH, threads)
    results.append(
        await measure(f"(a) append 1 event, {WRITERS} writers", one, their_one,
                      count=sizes.appends, warmup=WRITERS * 4, concurrency=WRITERS)
    )  # fmt: skip
    for writers in (1, WRITERS):
        name = f"(a) append {BATCH}-event batches, {writers} writer{'s' * (writers > 1)}"
        results.append(
            await measure(name, batch, their_batch, count=sizes.batches, warmup=writers * 2,
                          concurrency=writers, items_per_op=BATCH)
        )  # fmt: skip
    return results


# --- (b) FastStream's request ------------------------------------------------------------------


async def bench_rpc(settings: Settings, sizes: Sizes, stack: AsyncExitStack) -> Comparison:
    await migrate(settings)
    sample = sample_service.instance(settings.model_copy(update={"prefetch_count": RPC_CALLERS}))
    stack.push_async_callback(sample.stop)
    await sample.start()
    rpc = await RpcClient(settings.rabbitmq_url, service_name="bench").connect()
    stack.push_async_callback(rpc.close)
    broker = RabbitBroker(settings.rabbitmq_url, logger=None)
    await broker.connect()
    stack.push_async_callback(broker.stop)
    token = TokenCodec(settings).issue(Caller("bench-peers"), 86400)
    dawdle = next(t for t in RPC_TARGETS if t.goal is not None)  # the handler that waits
    ours, theirs = rpc_ops(dawdle, rpc, broker, token)
    count = await timed_count([ours, theirs], RPC_CALLERS, 2 * RPC_CALLERS, sizes.rpc_seconds)
    return await compare(
        f"(b) RPC to a handler waiting {DAWDLE_SECONDS * 1000:g} ms, {RPC_CALLERS} callers: "
        "RpcClient vs FastStream broker.request",
        ours,
        theirs,
        count=max(count, sizes.rpc_rounds * RPC_CALLERS),
        rounds=sizes.rpc_rounds,
        warmup=0,
        concurrency=RPC_CALLERS,
        scored=False,  # its goal is RPC_GOAL
        labels=THEM["FastStream"],
    )


# --- the run ----------------------------------------------------------------------------------


async def run(settings: Settings, sizes: Sizes, only: str | None) -> None:
    results: list[Comparison] = []
    goals: list[Goal] = []
    async with AsyncExitStack() as stack:
        if only in (None, "log"):
            results += await bench_log(settings, sizes, stack)
            goals.append(Goal("read the whole log, eventsourcing time / Banyan's",
                              results[0].throughput_ratio, READ_GOAL, "x"))  # fmt: skip
    if only in (None, "rpc"):
        async with AsyncExitStack() as stack:
            rpc = await bench_rpc(settings, sizes, stack)
        results.append(rpc)
        goals.append(Goal("RpcClient / FastStream request throughput", rpc.throughput_ratio,
                          RPC_GOAL, "x"))  # fmt: skip
    print_summary(results)
    print_goals(goals)


def describe(settings: Settings, sizes: Sizes) -> None:
    print("Banyan against its peers: the eventsourcing library, FastStream's request")
    print(
        f"  vhost {os.environ.get('BANYAN_TEST_VHOST', '(default)')}, schemas "
        f"{settings.database_schema} (Banyan) / {their_schema(settings)} (eventsourcing); "
        f"{sizes.events:,} events read {sizes.reads} times per side"
    )
    print("  ratio = peer's time / Banyan's: >1 means Banyan is faster", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    sizes, only = parse_args(argv)
    settings, env = isolated_settings(relay=False)
    try:
        describe(settings, sizes)
        eventloop.run(run(settings, sizes, only))  # the loop Banyan's processes run on
    finally:
        asyncio.run(drop_isolated_env(env))


if __name__ == "__main__":
    main()
