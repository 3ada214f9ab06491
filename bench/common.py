"""Timing, statistics and printing shared by the benchmarks.

Every comparison runs the SDK and its hand-written baseline in alternating rounds (A/B, B/A,
...) so that the noise of a shared machine falls on both sides alike. Ratios are
`baseline_time / sdk_time`: above 1 the SDK is faster, the goal is at least GOAL.
"""

import argparse
import asyncio
import gc
import math
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from time import perf_counter, perf_counter_ns
from typing import Any, TypeVar

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
    scored: bool = True  # False: a reference printed beside the others, with no goal
    labels: tuple[str, str] = ("SDK", "hand-written")  # of the two sides, as printed

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

    @property
    def ratios(self) -> tuple[float, float, float]:
        return self.median_ratio, self.p99_ratio, self.throughput_ratio


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
    scored: bool = True,
    labels: tuple[str, str] = ("SDK", "hand-written"),
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
        scored,
        labels,
    )
    print_comparison(comparison)
    return comparison


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def meets_goal(ratio: float) -> bool:
    return round(ratio, 2) >= GOAL  # as printed


def format_ratio(ratio: float, scored: bool = True) -> str:
    """A ratio, starred when it misses the goal."""
    return f"{ratio:.2f}" + ("  " if meets_goal(ratio) or not scored else " *")


def print_table(header: list[str], rows: list[list[str]], indent: str = "") -> None:
    """Columns sized to fit; the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print(indent + "   ".join(cells).rstrip())


def print_comparison(c: Comparison) -> None:
    print(f"\n{c.name}  ({c.concurrency} in flight)")
    rows = [
        [label, _ms(s.median_ms), _ms(s.p99_ms), f"{s.throughput:,.0f} {c.unit}/s", str(s.ops)]
        for label, s in zip(c.labels, (c.sdk, c.baseline), strict=True)
    ]
    ratios = [format_ratio(r, c.scored) for r in c.ratios]
    rows.append(["ratio", *ratios, ""])
    print_table(["", "median", "p99", "throughput", "n"], rows, indent="  ")
    sys.stdout.flush()


def print_summary(comparisons: list[Comparison]) -> None:
    print(
        f"\nSummary: ratio = baseline_time / sdk_time; >1 means the SDK is faster; "
        f"goal >= {GOAL} (* = below)"
    )
    header = [
        "benchmark",
        "SDK med",
        "base med",
        "ratio",
        "SDK p99",
        "base p99",
        "ratio",
        "SDK tput",
        "base tput",
        "ratio",
    ]
    rows = [
        [
            c.name,
            _ms(c.sdk.median_ms),
            _ms(c.baseline.median_ms),
            format_ratio(c.median_ratio, c.scored),
            _ms(c.sdk.p99_ms),
            _ms(c.baseline.p99_ms),
            format_ratio(c.p99_ratio, c.scored),
            f"{c.sdk.throughput:,.0f}/s",
            f"{c.baseline.throughput:,.0f}/s",
            format_ratio(c.throughput_ratio, c.scored),
        ]
        for c in comparisons
    ]
    print_table(header, rows)
    below = [c.name for c in comparisons if c.scored and not all(map(meets_goal, c.ratios))]
    print(f"\nbelow goal: {'; '.join(below)}" if below else "\nall ratios meet the goal")


# --- helpers for benchmarks with their own goals and size options ------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    """A target beyond the ratio GOAL, e.g. "p50 under 5 ms" or "at least 10x faster"."""

    name: str
    value: float
    target: float
    unit: str = ""
    at_most: bool = False  # the value must stay at or under the target (a latency)

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target


def print_goals(goals: list[Goal]) -> None:
    print("\nGoals:")
    rows = [
        [
            g.name,
            f"{g.value:,.2f}{g.unit}",
            f"{'<=' if g.at_most else '>='} {g.target:g}{g.unit}",
            "met" if g.met else "MISSED",
        ]
        for g in goals
    ]
    print_table(["goal", "measured", "target", ""], rows, indent="  ")
    sys.stdout.flush()


async def timed_count(ops: list[Op], concurrency: int, probe: int, seconds: float) -> int:
    """How many operations each side may run to take about `seconds` at the slowest side's
    pace, measured over `probe` operations of each (which also warm them up)."""
    rates = []
    for op in ops:
        sample = await run_ops(op, probe, concurrency)
        rates.append(len(sample.latencies_ns) / max(sample.elapsed_s, 1e-9))
    return max(1, round(min(rates) * seconds))


SizesT = TypeVar("SizesT")


def add_size_options(parser: argparse.ArgumentParser, default: Any, quick: Any) -> None:
    """`--name N` for each field of a sizes dataclass, with its default and quick values."""
    for f in fields(default):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(default, f.name)),
            metavar="N",
            help=f"default {getattr(default, f.name)}, quick {getattr(quick, f.name)}",
        )


def chosen_sizes(args: argparse.Namespace, sizes: SizesT) -> SizesT:
    """`sizes` with the fields given on the command line replaced."""
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(sizes)  # type: ignore[arg-type]
        if getattr(args, f.name, None) is not None
    }
    return replace(sizes, **overrides)  # type: ignore[type-var]
