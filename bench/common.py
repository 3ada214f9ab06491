"""Timing, statistics and printing shared by the benchmarks.

Every comparison runs the SDK and its hand-written baseline in alternating rounds (A/B, B/A,
...) so that the noise of a shared machine falls on both sides alike. Ratios are
`baseline_time / sdk_time`: above 1 the SDK is faster, the goal is at least GOAL.
"""

import asyncio
import gc
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns

GOAL = 0.8

Op = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class Sample:
    """Latencies of the operations of one or more runs, and the wall time they took."""

    latencies_ns: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def extend(self, other: "Sample") -> None:
        self.latencies_ns.extend(other.latencies_ns)
        self.elapsed_s += other.elapsed_s


@dataclass(frozen=True, slots=True)
class Stats:
    median_ms: float
    p99_ms: float
    throughput: float  # items per second (an operation may carry several items)
    ops: int

    @classmethod
    def of(cls, sample: Sample, items_per_op: int = 1) -> "Stats":
        ordered = sorted(sample.latencies_ns)
        ops = len(ordered)
        return cls(
            median_ms=percentile(ordered, 50) / 1e6,
            p99_ms=percentile(ordered, 99) / 1e6,
            throughput=ops * items_per_op / sample.elapsed_s if sample.elapsed_s else 0.0,
            ops=ops,
        )


def percentile(ordered: list[int], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    sdk: Stats
    baseline: Stats
    unit: str  # what throughput counts: "req", "events"
    concurrency: int

    @property
    def median_ratio(self) -> float:
        return self.baseline.median_ms / self.sdk.median_ms

    @property
    def p99_ratio(self) -> float:
        return self.baseline.p99_ms / self.sdk.p99_ms

    @property
    def throughput_ratio(self) -> float:
        """Time per item is 1/throughput, so baseline_time / sdk_time is this quotient."""
        return self.sdk.throughput / self.baseline.throughput


async def run_ops(op: Op, count: int, concurrency: int = 1) -> Sample:
    """Run `op` `count` times with `concurrency` of them in flight; time each and the whole."""
    latencies: list[int] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = perf_counter_ns()
            await op()
            latencies.append(perf_counter_ns() - start)

    gc.collect()
    started = perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    return Sample(latencies, perf_counter() - started)


async def compare(
    name: str,
    sdk: Op,
    baseline: Op,
    *,
    count: int,
    rounds: int,
    warmup: int,
    concurrency: int = 1,
    items_per_op: int = 1,
    unit: str = "req",
) -> Comparison:
    """Warm both up, then alternate SDK and baseline rounds; `count` operations per side."""
    for op in (sdk, baseline):
        await run_ops(op, warmup, concurrency)
    samples = {"sdk": Sample(), "baseline": Sample()}
    sides = [("sdk", sdk), ("baseline", baseline)]
    rounds = max(1, rounds)
    for number in range(rounds):
        share = count // rounds + (1 if number < count % rounds else 0)
        for key, op in sides if number % 2 == 0 else sides[::-1]:
            samples[key].extend(await run_ops(op, share, concurrency))
    comparison = Comparison(
        name,
        Stats.of(samples["sdk"], items_per_op),
        Stats.of(samples["baseline"], items_per_op),
        unit,
        concurrency,
    )
    print_comparison(comparison)
    return comparison


def _verdict(ratio: float) -> str:
    return "ok" if ratio >= GOAL else "BELOW GOAL"


def _ratio(ratio: float) -> str:
    return f"{ratio:5.2f} {_verdict(ratio):<10}"


def _stats_row(label: str, stats: Stats, unit: str) -> str:
    return (
        f"  {label:<14}{stats.median_ms:9.3f} ms {stats.p99_ms:9.3f} ms "
        f"{stats.throughput:11,.0f} {unit}/s   (n={stats.ops})"
    )


def print_comparison(c: Comparison) -> None:
    print(f"\n{c.name}  [{c.concurrency} in flight]")
    print(f"  {'':<14}{'median':>12} {'p99':>12} {'throughput':>17}")
    print(_stats_row("SDK", c.sdk, c.unit))
    print(_stats_row("hand-written", c.baseline, c.unit))
    print(
        f"  {'ratio':<14}{'':>3}{_ratio(c.median_ratio)}{_ratio(c.p99_ratio)}"
        f"{_ratio(c.throughput_ratio)}",
        flush=True,
    )


def print_summary(comparisons: list[Comparison]) -> None:
    width = max(len(c.name) for c in comparisons)
    print(
        f"\nSummary: ratio = baseline_time / sdk_time (>1 means the SDK is faster; goal >= {GOAL})"
    )
    head = (
        f"{'benchmark':<{width}}  {'SDK med':>9} {'base med':>9} {'ratio':>6}  "
        f"{'SDK p99':>9} {'base p99':>9} {'ratio':>6}  {'SDK tput':>12} {'base tput':>12} "
        f"{'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    for c in comparisons:
        print(
            f"{c.name:<{width}}  {c.sdk.median_ms:7.3f}ms {c.baseline.median_ms:7.3f}ms "
            f"{c.median_ratio:6.2f}  {c.sdk.p99_ms:7.3f}ms {c.baseline.p99_ms:7.3f}ms "
            f"{c.p99_ratio:6.2f}  {c.sdk.throughput:8,.0f}/s {c.baseline.throughput:8,.0f}/s "
            f"{c.throughput_ratio:6.2f}"
        )
    below = [
        c.name for c in comparisons if min(c.median_ratio, c.p99_ratio, c.throughput_ratio) < GOAL
    ]
    print(f"\nbelow goal: {', '.join(below)}" if below else "\nall ratios meet the goal")
