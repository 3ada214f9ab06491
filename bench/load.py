"""Load: the highest mixed rate each side sustains, then a soak that watches Banyan's memory.

    .venv/bin/python -m bench.load                  # ramp (3-5 minutes), then a 10-minute soak
    .venv/bin/python -m bench.load --quick          # ramp (about 1 minute), then a 1-minute soak
    .venv/bin/python -m bench.load --soak 1800      # a longer soak (0: none)
    .venv/bin/python -m bench.load --only soak --soak-rate 150

Traffic: 4 of every 5 requests are GET /api/orders/get-order for an existing order, answered
from the gateway's Redis cache; the 5th is POST /api/orders/place-order; all with a real bearer
token, over HTTP through the gateway -> RabbitMQ -> the orders service -> PostgreSQL. The
hand-written side gets the same requests: a bare ASGI app (PyJWT, aio-pika direct reply-to,
a Redis GET) -> aio-pika + asyncpg orders service.

(1) Ramp, open loop: request i is sent at start + i/rate whatever became of earlier ones, and
    its latency runs from that scheduled time, so a slow server cannot slow the generator down
    and hide its queue (coordinated omission). The rate doubles from --start-rate until a step
    fails, then bisects between the highest sustained and the lowest failed rate until they
    are within --precision. A step of --step seconds is sustained when p99 < 100 ms, no request
    failed and the requests answered per second of sending reach 95% of the target; a failed
    step is run once more before it counts. The sides take turns (alternating who goes first),
    so that a shared machine's noise falls on both. Each step also shows the CPU time the
    side's programs spent per answered request (from /proc), steadier than rates on a busy
    machine, and the share of a core the load generator used.
(2) Soak: Banyan alone, in fresh processes, at --soak-share of its sustained rate (or
    --soak-rate) for --soak seconds. The RSS of each of its processes is sampled every --sample
    seconds; growth is measured from the end of the warm-up (the first fifth) to the end, and
    fitted (least squares); either above 2% flags the process, unless its memory levels off:
    a saturating curve (plateau - a * exp(-t / tau)) fits the samples better than the line,
    with tau at most a third of the soak after warm-up, and the plateau within 2% of the end
    (allocator arenas and pools fill up to what the load needs, then stay).

Processes, the same layout for both sides: this one generates the load; each side runs its
gateway and its orders service as separate programs (Banyan also runs discovery, from which
its gateway learns the orders routes); see bench/loadrig.py. Banyan's orders service is
`examples.orders:app` as users run it, with its read model: each new order is projected (the
hand-written side keeps no read model), and GetOrder is cached by order id, so new orders
leave the cached answers in place. No event relay runs (the hand-written side has none). The
run gets its own RabbitMQ vhost, PostgreSQL schemas and
Redis prefix, dropped at the end, also on failure.
"""

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import h11
import redis.asyncio as aioredis

from bench.baseline import RawRpcClient, create_schema
from bench.common import (
    GOAL,
    Goal,
    Sample,
    Stats,
    add_size_options,
    chosen_sizes,
    format_ratio,
    print_goals,
    print_table,
)
from bench.environment import isolated_settings
from bench.foundation import ORDER, cleanup
from bench.gateway import KEEP_ALIVE, UNLIMITED, BareGateway, forget_keys
from bench.loadrig import (
    Program,
    baseline_schema,
    faststream_argv,
    free_port,
    launch,
    uvicorn_argv,
)
from gateway.registry import from_discovery
from pipelines.database import migrate
from pipelines.errors import PlatformError
from pipelines.identity import Caller, TokenCodec
from pipelines.rpc import RpcClient
from pipelines.settings import Settings

P99_LIMIT_MS = 100.0
ANSWERED_SHARE = 0.95  # of the target rate, for a step to count as sustained
COMMAND_EVERY = 5  # every 5th request a command: 20% commands, 80% cached queries
# A ramp step gives up once this many seconds' worth of requests wait (its p99 is lost anyway:
# they are at least a quarter of a short step); a soak rides out stalls up to its limit.
BACKLOG_SECONDS, SOAK_BACKLOG_SECONDS = 0.5, 10.0
MIN_RATE, MAX_RATE = 5.0, 20_000.0  # requests per second: where a ramp stops searching
PAUSE = 1.0  # seconds between steps
MAX_CONNECTIONS = 512  # per side; beyond, requests wait for a connection (and it shows)
REQUEST_TIMEOUT = 10.0
IDLE_EXPIRY = KEEP_ALIVE / 4  # seconds a client keeps an idle connection (the servers': KEEP_ALIVE)
READY_TIMEOUT = 60.0  # seconds for the programs of a side to start, or the read model
WARMUP_SHARE = 0.2  # of the soak, before memory counts
GROWTH_LIMIT = 0.02
LEVELED_SHARE = 1 / 3  # of the soak after warm-up: tau at most this for a plateau
READ_SIZE = 65536


@dataclass(frozen=True)
class Sizes:
    step: float = 5.0  # seconds per ramp step
    start_rate: float = 50.0  # requests per second of the first step (and of the warm-up)
    precision: float = 0.1  # bisect until failed - sustained <= precision * failed
    orders: int = 100  # existing orders the queries ask for
    soak: float = 600.0  # seconds; 0: no soak
    soak_share: float = 0.65  # of Banyan's sustained rate
    soak_rate: float = 0.0  # requests per second; 0: soak_share of the sustained rate
    sample: float = 5.0  # seconds between RSS samples


QUICK = Sizes(step=2.0, precision=0.25, orders=20, soak=60.0, sample=2.0)


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    only: str | None


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short steps and soak")
    parser.add_argument("--only", choices=["ramp", "soak"], help="run one part")
    add_size_options(parser, Sizes(), QUICK)
    args = parser.parse_args(argv)
    sizes = chosen_sizes(args, QUICK if args.quick else Sizes())
    if args.only == "soak" and not sizes.soak_rate:
        parser.error("--only soak needs --soak-rate")
    if sizes.soak and sizes.sample * 4 > sizes.soak * (1 - WARMUP_SHARE):
        parser.error("--sample must allow at least 4 samples after the soak's warm-up")
    return Options(sizes, args.only)


# --- an HTTP/1.1 client light enough not to be the bottleneck -----------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    head: h11.Request
    body: bytes
    query: bool


def request(
    method: str, target: str, token: str, body: bytes = b"", min_position: int = 0
) -> Request:
    headers = [("host", "127.0.0.1"), ("authorization", f"Bearer {token}")]
    if min_position:
        headers.append(("x-min-position", str(min_position)))
    if body:
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
    return Request(
        h11.Request(method=method, target=target, headers=headers), body, method == "GET"
    )


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Connection:
    """One keep-alive connection, framed by h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.reusable = True
        self.idle_since = 0.0  # time.monotonic() when it went back to the client's idle ones

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, req: Request) -> Reply:
        out = self.h11.send(req.head) or b""
        if req.body:
            out += self.h11.send(h11.Data(data=req.body)) or b""
        self.writer.write(out + (self.h11.send(h11.EndOfMessage()) or b""))
        status, headers, body = 0, {}, bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.reader.read(READ_SIZE))
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.reusable = (self.h11.our_state, self.h11.their_state) == (h11.DONE, h11.DONE)
                if self.reusable:  # else the server said Connection: close
                    self.h11.start_next_cycle()
                return Reply(status, headers, bytes(body))
            else:
                raise ConnectionError(f"unexpected {event!r}")


class Client:
    """Keep-alive connections to one server: one per request in flight, up to a limit.

    Like the HTTP clients users run, it closes a connection that sat idle for `idle_expiry`
    seconds instead of reusing it: well before the server's keep-alive timeout, which would
    otherwise race a request sent just as the server closes (the request fails unanswered).
    """

    def __init__(self, port: int, idle_expiry: float = IDLE_EXPIRY) -> None:
        self.port = port
        self.idle_expiry = idle_expiry
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def send(self, req: Request, timeout: float = REQUEST_TIMEOUT) -> Reply:
        async with self._slots:
            conn = self._reusable() or await Connection.open(self.port)
            try:
                reply = await asyncio.wait_for(conn.exchange(req), timeout)
            except BaseException:
                conn.close()
                raise
            if conn.reusable:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return reply

    def _reusable(self) -> Connection | None:
        """The idle connection used last, closing those idle too long on the way."""
        while self._idle:
            conn = self._idle.pop()
            if time.monotonic() - conn.idle_since < self.idle_expiry:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


# --- open-loop steps ---------------------------------------------------------------------------


class Mix:
    """Every COMMAND_EVERY-th request the command; the others queries, cycling over orders."""

    def __init__(self, command: Request, queries: list[Request]) -> None:
        self._command, self._queries = command, itertools.cycle(queries)
        self._count = 0

    def next(self) -> Request:
        self._count += 1
        return self._command if self._count % COMMAND_EVERY == 0 else next(self._queries)


@dataclass(frozen=True)
class Side:
    label: str
    client: Client
    mix: Mix
    says_cache_hits: bool  # answers carry X-Cache (the gateway's do)
    programs: list[Program]

    def cpu_seconds(self) -> dict[str, float]:
        return {p.name: p.cpu_seconds() for p in self.programs}


@dataclass
class Tally:
    """What one step's requests got."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    queries: int = 0
    hits: int = 0

    def fail(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why


@dataclass(frozen=True)
class Step:
    rate: float  # the target, requests per second
    stats: Stats  # of the answered requests; throughput: answered per second of sending
    tally: Tally
    complete: bool  # False: given up, too many requests were waiting
    generator_cpu: float  # share of one core this process used meanwhile
    server_cpu: dict[str, float]  # CPU seconds each program of the side used meanwhile

    def cpu_ms_per_request(self) -> dict[str, float]:
        answered = max(1, len(self.tally.latencies_ns))
        return {name: cpu * 1000 / answered for name, cpu in self.server_cpu.items()}

    @property
    def sustained(self) -> bool:
        return (
            self.complete
            and self.tally.errors == 0
            and self.stats.p99_ms < P99_LIMIT_MS
            and self.stats.throughput >= ANSWERED_SHARE * self.rate
        )


async def timed(client: Client, req: Request, scheduled: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    try:
        reply = await client.send(req)
    except (OSError, TimeoutError, h11.ProtocolError) as exc:
        tally.fail(repr(exc))
        return
    if reply.status != 200:
        tally.fail(f"{reply.status} {reply.body[:200]!r}")
        return
    tally.latencies_ns.append(round((loop.time() - scheduled) * 1e9))
    if req.query:
        tally.queries += 1
        tally.hits += reply.headers.get(b"x-cache") == b"hit"


async def open_loop(
    side: Side, rate: float, seconds: float, backlog: float = BACKLOG_SECONDS
) -> Step:
    """Send at `rate` for `seconds` on schedule, then wait for every answer."""
    loop = asyncio.get_running_loop()
    tally, pending = Tally(), set[asyncio.Task[None]]()
    total = max(1, round(rate * seconds))
    gc.collect()
    start, cpu, servers, sent = loop.time(), time.process_time(), side.cpu_seconds(), 0
    while sent < total and len(pending) <= rate * backlog:
        scheduled = start + sent / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))  # yields even when late
        task = asyncio.create_task(timed(side.client, side.mix.next(), scheduled, tally))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 1
    sending = loop.time() - start + 1 / rate
    await asyncio.gather(*pending)
    busy = (time.process_time() - cpu) / (loop.time() - start)
    used = {name: now - servers[name] for name, now in side.cpu_seconds().items()}
    stats = Stats.of(Sample(tally.latencies_ns, sending))
    return Step(rate, stats, tally, sent == total, busy, used)


# --- (1) the ramp ------------------------------------------------------------------------------


@dataclass
class Search:
    """Double the rate until a step fails, then bisect between the best and the failed."""

    rate: float
    precision: float
    best: Step | None = None  # the highest sustained step
    failed: float | None = None  # the lowest failed rate
    retried: float | None = None  # the last rate that failed once
    steps: int = 0

    @property
    def floor(self) -> float:
        return self.best.rate if self.best else 0.0

    @property
    def done(self) -> bool:
        if self.failed is None:
            return self.rate > MAX_RATE
        return self.failed - self.floor <= self.precision * self.failed or self.failed < MIN_RATE

    def record(self, step: Step) -> None:
        self.steps += 1
        if step.sustained:
            self.best = step
        elif self.retried != step.rate:  # a failure counts when confirmed: noise fails steps too
            self.retried = step.rate
            return
        else:
            self.failed = step.rate
        self.rate = self.rate * 2 if self.failed is None else (self.floor + self.failed) / 2


def print_step(side: Side, step: Step, note: str = "") -> None:
    s, t = step.stats, step.tally
    cpu = sum(step.cpu_ms_per_request().values())
    hits = f"{t.hits / t.queries:.0%}" if side.says_cache_hits and t.queries else "-"
    verdict = note or ("sustained" if step.sustained else "FAILED")
    if not step.complete:
        verdict += " (gave up: backlog)"
    print(
        f"  {side.label:<12} {step.rate:>7,.0f}/s  answered {s.throughput:>7,.0f}/s  "
        f"p50 {s.median_ms:>7.1f} ms  p99 {s.p99_ms:>8.1f} ms  errors {t.errors:>4}  "
        f"cache hits {hits:>4}  servers' CPU {cpu:>5.2f} ms/req  "
        f"load generator's {step.generator_cpu:>4.0%}  {verdict}"
        + (f"  first error: {t.first_error}" if t.errors else ""),
        flush=True,
    )


async def ramp(sides: list[Side], sizes: Sizes) -> list[Search]:
    print(
        f"\n(1) ramp: {sizes.step:g} s steps, sustained = p99 < {P99_LIMIT_MS:g} ms, no errors, "
        f"answered >= {ANSWERED_SHARE:.0%} of the rate"
    )
    for side in sides:
        print_step(side, await open_loop(side, sizes.start_rate, sizes.step), "warm-up")
    searches = [Search(sizes.start_rate, sizes.precision) for _ in sides]
    pairs = list(zip(sides, searches, strict=True))
    turn = 0
    while not all(search.done for search in searches):
        for side, search in pairs if turn % 2 == 0 else pairs[::-1]:
            if not search.done:
                await asyncio.sleep(PAUSE)
                step = await open_loop(side, search.rate, sizes.step)
                search.record(step)
                print_step(side, step)
        turn += 1
    return searches


def cpu_breakdown(step: Step) -> str:
    costs = step.cpu_ms_per_request().items()
    return " + ".join(f"{name} {ms:.2f}" for name, ms in costs) + " ms"


def print_ramp(sides: list[Side], searches: list[Search]) -> Goal:
    """The sustained rates and their ratio; the goal it sets."""
    rows, rates = [], []
    for side, search in zip(sides, searches, strict=True):
        best = search.best
        rates.append(best.rate if best else 0.0)
        there = (
            [f"{best.stats.median_ms:.1f} ms", f"{best.stats.p99_ms:.1f} ms", cpu_breakdown(best)]
            if best
            else ["-", "-", "-"]
        )
        rows.append([side.label, f"{rates[-1]:,.0f} req/s", *there, str(search.steps)])
    ratio = rates[0] / rates[1] if rates[1] else 0.0
    rows.append(["ratio", format_ratio(ratio), "", "", "", ""])
    print(f"\nHighest sustained mixed rate (ratio = Banyan / hand-written; goal >= {GOAL}):")
    header = ["", "sustained", "p50 there", "p99 there", "CPU per request there", "steps"]
    print_table(header, rows, indent="  ")
    return Goal("sustained mixed rate, Banyan / hand-written", ratio, GOAL, "x")


# --- (2) the soak ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    """A process's resident memory over the soak, after its warm-up."""

    name: str
    warm_mb: float
    end_mb: float
    peak_mb: float
    slope: float  # MB per minute, least squares over the samples after the warm-up
    minutes: float  # that the fit covers

    @property
    def measured(self) -> float:
        return (self.end_mb - self.warm_mb) / self.warm_mb

    @property
    def fitted(self) -> float:
        return self.slope * self.minutes / self.warm_mb

    plateau: "Plateau | None" = None

    @property
    def worst(self) -> float:
        return max(self.measured, self.fitted)

    @property
    def to_come(self) -> float:
        """Growth still ahead of the end, as a share of it: to the plateau if it levels off,
        else the measured or fitted growth (whichever is worse)."""
        if self.plateau is None:
            return self.worst
        return max(0.0, (self.plateau.mb - self.end_mb) / self.end_mb)

    @property
    def judged_by_plateau(self) -> bool:
        """Grown beyond the limit, but levelling off: judged by the growth still to come."""
        return self.worst > GROWTH_LIMIT and self.plateau is not None

    @property
    def flagged(self) -> bool:
        return self.worst > GROWTH_LIMIT and self.to_come > GROWTH_LIMIT


@dataclass(frozen=True)
class Plateau:
    """A saturating fit of memory over time: mb(t) = mb - amplitude * exp(-t / tau)."""

    mb: float
    tau: float  # minutes


def growth(name: str, samples: list[tuple[float, float]], warmup: float) -> Growth:
    """From (seconds, MB) samples; those before `warmup` seconds are left out."""
    after = [(t / 60, mb) for t, mb in samples if t >= warmup]
    minutes, mbs = zip(*after, strict=True)
    slope = statistics.linear_regression(minutes, mbs).slope
    peak = max(mb for _, mb in samples)
    since = [m - minutes[0] for m in minutes]
    return Growth(name, mbs[0], mbs[-1], peak, slope, since[-1], leveling(since, mbs))


def squared_error(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares line of ys over xs: (intercept, slope, sum of squared residuals)."""
    fit = statistics.linear_regression(xs, ys)
    error = sum((y - fit.intercept - fit.slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return fit.intercept, fit.slope, error


def leveling(minutes: Sequence[float], mbs: Sequence[float]) -> Plateau | None:
    """The plateau the samples level off to, if a saturating curve with tau within
    LEVELED_SHARE of the span fits them better than a line; else None. Tau is searched on a
    geometric grid; for each, the curve is linear in exp(-t / tau)."""
    span = minutes[-1]
    if span <= 0 or len(set(mbs)) < 2:
        return None
    line_error = squared_error(minutes, mbs)[2]
    best: tuple[float, Plateau] | None = None
    for step in range(60):
        tau = span / 100 * 1.1**step  # span/100 .. about 3x the span
        decay = [math.exp(-m / tau) for m in minutes]
        if len(set(decay)) < 2:
            continue
        plateau, slope, error = squared_error(decay, mbs)
        if slope < 0 and (best is None or error < best[0]):  # rising towards the plateau
            best = (error, Plateau(plateau, tau))
    if best is None or best[0] >= line_error or best[1].tau > span * LEVELED_SHARE:
        return None
    return best[1]


async def sample_rss(
    programs: list[Program], every: float, into: dict[str, list[tuple[float, float]]]
) -> None:
    start = time.monotonic()
    while True:
        for program in programs:
            program.check()
            into[program.name].append((time.monotonic() - start, program.rss_mb()))
        await asyncio.sleep(every)


async def soak(side: Side, rate: float, sizes: Sizes) -> list[Goal]:
    programs = side.programs
    print(
        f"\n(2) soak: {side.label} at {rate:,.0f} req/s for {sizes.soak:g} s; RSS every "
        f"{sizes.sample:g} s, counted after {sizes.soak * WARMUP_SHARE:g} s of warm-up"
    )
    samples: dict[str, list[tuple[float, float]]] = {p.name: [] for p in programs}
    sampler = asyncio.create_task(sample_rss(programs, sizes.sample, samples))
    try:
        step = await open_loop(side, rate, sizes.soak, SOAK_BACKLOG_SECONDS)
    finally:
        sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    if not sampler.cancelled() and (failure := sampler.exception()) is not None:
        raise failure
    print_step(side, step, "soak")
    goals = [
        Goal("soak p99", step.stats.p99_ms, P99_LIMIT_MS, " ms", at_most=True),
        Goal("soak errors", step.tally.errors, 0, at_most=True),
    ]
    if not step.complete:
        print("\nThe soak gave up: resident memory is not judged.")
        return [*goals, Goal("soak ran to its end", 0, 1)]
    growths = [growth(p.name, samples[p.name], sizes.soak * WARMUP_SHARE) for p in programs]
    print_growths(growths)
    return [
        *goals,
        *(
            Goal(
                f"{g.name} RSS growth after warm-up"
                + (", still to come (levels off)" if g.judged_by_plateau else ""),
                (g.to_come if g.judged_by_plateau else g.worst) * 100,
                GROWTH_LIMIT * 100,
                "%",
                at_most=True,
            )
            for g in growths
        ),
    ]


def print_growths(growths: list[Growth]) -> None:
    print(
        f"\nResident memory (flagged: measured or fitted growth above {GROWTH_LIMIT:.0%}, "
        f"unless it levels off within {GROWTH_LIMIT:.0%} of the end):"
    )
    rows = [
        [
            g.name,
            f"{g.warm_mb:.1f} MB",
            f"{g.end_mb:.1f} MB",
            f"{g.peak_mb:.1f} MB",
            f"{g.measured:+.1%}",
            f"{g.fitted:+.1%}",
            f"{g.slope:+.3f} MB/min",
            f"{g.plateau.mb:.1f} MB, tau {g.plateau.tau:.1f} min" if g.plateau else "-",
            "GROWING" if g.flagged else "ok" if g.worst <= GROWTH_LIMIT else "levels off",
        ]
        for g in growths
    ]
    header = [
        "process", "after warm-up", "end", "peak", "growth", "fitted", "slope", "plateau", ""
    ]  # fmt: skip
    print_table(header, rows, indent="  ")


# --- the programs of each side, ready to serve -------------------------------------------------


def child_env() -> dict[str, str]:
    """The run's isolated settings, plus: announce to discovery, never rate limit."""
    return {
        **os.environ,
        "ANNOUNCE_ENABLED": "true",
        "RATE_LIMIT_PER_USER": str(UNLIMITED),
        "DISCOVERY_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }


async def until(ready: Callable[[], Awaitable[bool]], programs: list[Program], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not await ready():
        for program in programs:
            program.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {READY_TIMEOUT:g} s")
        await asyncio.sleep(0.2)


def answering(client: Client, req: Request) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        try:
            return (await client.send(req, timeout=2.0)).status == 200
        except (OSError, TimeoutError, h11.ProtocolError):
            return False

    return probe


def registered(rpc: RpcClient, service: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        try:
            return any(e.name == service and e.healthy for e in await from_discovery(rpc))
        except PlatformError:
            return False

    return probe


def launched(programs: list[Program], stack: AsyncExitStack) -> list[Program]:
    for program in programs:
        stack.callback(program.stop)
    return programs


async def start_banyan(
    settings: Settings, token: str, sizes: Sizes, logs: Path, stack: AsyncExitStack
) -> tuple[Side, dict[str, bytes]]:
    """Discovery and orders; once orders is registered, the gateway (which then loads its
    routes at start-up); then the existing orders, read once so that the gateway caches them."""
    env, port = child_env(), free_port()
    programs = launched(
        [
            launch("discovery", faststream_argv("discovery:app"), env, logs),
            launch("orders", faststream_argv("examples.orders:app"), env, logs),
        ],
        stack,
    )
    rpc = await RpcClient(settings.rabbitmq_url, service_name="bench").connect()
    try:
        await until(registered(rpc, "orders"), programs, "orders in discovery")
    finally:
        await rpc.close()
    programs += launched([launch("gateway", uvicorn_argv("gateway:app", port), env, logs)], stack)
    client = Client(port)
    stack.callback(client.close)
    await until(answering(client, request("GET", "/ready", token)), programs, "the gateway")
    command = request("POST", "/api/orders/place-order", token, ORDER)
    answers = await cached_orders(settings, client, command, token, sizes.orders)
    queries = [request("GET", f"/api/orders/get-order?orderId={i}", token) for i in answers]
    return Side("Banyan", client, Mix(command, queries), True, programs), answers


async def cached_orders(
    settings: Settings, client: Client, command: Request, token: str, count: int
) -> dict[str, bytes]:
    """Place `count` orders and read each once its read model has it (and so cache it)."""
    placed = [await client.send(command) for _ in range(count)]
    if any(r.status != 200 for r in placed):
        raise RuntimeError(f"cannot place orders: {[r.body for r in placed if r.status != 200]}")
    position = max(int(r.headers[b"x-event-position"]) for r in placed)
    answers = {}
    for order_id in (json.loads(r.body)["orderId"] for r in placed):
        target = f"/api/orders/get-order?orderId={order_id}"
        read = await client.send(request("GET", target, token, min_position=position))
        if read.status != 200:
            raise RuntimeError(f"cannot read order {order_id}: {read.status} {read.body!r}")
        answers[order_id] = read.body
    return answers


async def start_bare(
    settings: Settings, token: str, answers: dict[str, bytes], logs: Path, stack: AsyncExitStack
) -> Side:
    """The hand-written orders service and gateway, with Banyan's cached answers in Redis."""
    env, port = child_env(), free_port()
    programs = launched(
        [
            launch("bare-orders", ["-m", "bench.loadrig"], env, logs),
            launch("bare-gateway", uvicorn_argv("bench.loadrig:bare_gateway", port), env, logs),
        ],
        stack,
    )
    client = Client(port)
    stack.callback(client.close)
    command = request("POST", "/place-order", token, ORDER)
    await until(answering(client, command), programs, "the hand-written side")
    redis = aioredis.from_url(settings.redis_url)
    keys = BareGateway(RawRpcClient(), redis, settings.jwt_secret, settings.cache_prefix)
    try:
        for order_id, body in answers.items():
            await redis.set(keys.cache_key(order_id), body)
    finally:
        await redis.aclose()
    queries = [request("GET", f"/get-order?orderId={i}", token) for i in answers]
    return Side("hand-written", client, Mix(command, queries), False, programs)


# --- the run -----------------------------------------------------------------------------------


async def ramp_part(settings: Settings, token: str, sizes: Sizes, logs: Path) -> tuple[Goal, float]:
    """The ramp of both sides; its goal and Banyan's sustained rate."""
    await create_schema(settings.database_url, baseline_schema(settings), settings.database_schema)
    async with AsyncExitStack() as stack:
        banyan, answers = await start_banyan(settings, token, sizes, logs, stack)
        sides = [banyan, await start_bare(settings, token, answers, logs, stack)]
        searches = await ramp(sides, sizes)
    best = searches[0].best
    return print_ramp(sides, searches), best.rate if best else 0.0


async def soak_part(
    settings: Settings, token: str, sizes: Sizes, logs: Path, sustained: float
) -> list[Goal]:
    rate = sizes.soak_rate or sizes.soak_share * sustained
    if rate < MIN_RATE:
        raise RuntimeError(f"no rate to soak at ({rate:g} req/s); give --soak-rate")
    async with AsyncExitStack() as stack:
        banyan, _ = await start_banyan(settings, token, sizes, logs, stack)
        return await soak(banyan, rate, sizes)


async def run(settings: Settings, options: Options, logs: Path) -> bool:
    """Run the parts asked for; whether every goal was met."""
    await migrate(settings)
    permissions = frozenset({"orders:place", "orders:read"})
    token = TokenCodec(settings).issue(Caller("bench-customer", permissions=permissions), 86400)
    goals, sustained = [], 0.0
    if options.only != "soak":
        goal, sustained = await ramp_part(settings, token, options.sizes, logs)
        goals.append(goal)
    if options.only != "ramp" and options.sizes.soak > 0:
        goals += await soak_part(settings, token, options.sizes, logs, sustained)
    print_goals(goals)
    return all(goal.met for goal in goals)


def describe(settings: Settings, options: Options, logs: Path) -> None:
    s = options.sizes
    print(
        "Banyan load benchmark: mixed traffic, gateway vs hand-written (bare ASGI + aio-pika + "
        "asyncpg + redis)"
    )
    print(
        f"  vhost {os.environ.get('BANYAN_TEST_VHOST', '(default)')}, schemas "
        f"{settings.database_schema} (Banyan) / {baseline_schema(settings)} (hand-written), "
        f"Redis prefix {settings.cache_prefix}"
    )
    print(
        f"  {100 - 100 // COMMAND_EVERY}% cached GET get-order over {s.orders} orders, "
        f"{100 // COMMAND_EVERY}% POST place-order; ramp from {s.start_rate:g} req/s, precision "
        f"{s.precision:.0%}; soak {s.soak:g} s at "
        + (f"{s.soak_rate:g} req/s" if s.soak_rate else f"{s.soak_share:.0%} of the sustained rate")
    )
    print(f"  the programs' output goes to {logs} (kept unless every goal is met)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up when terminated too
    settings, env = isolated_settings(relay=False)
    logs = Path(tempfile.mkdtemp(prefix="banyan-load-"))
    try:
        describe(settings, options, logs)
        if asyncio.run(run(settings, options, logs)):
            shutil.rmtree(logs)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        asyncio.run(forget_keys(settings))
        asyncio.run(cleanup(env, settings.database_url, baseline_schema(settings)))


if __name__ == "__main__":
    main()
