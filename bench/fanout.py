"""The gateway's event fan-out: 1,000 subscribers on the real EventHub, 200 events/s.

    .venv/bin/python -m bench.fanout            # about 2 minutes
    .venv/bin/python -m bench.fanout --quick    # about 30 seconds

The same OrderPlaced events reach 1,000 subscribers who all receive every one, three ways:
(a) audience: the orders contract (orders:read, owner customer_id, admin orders:admin);
    every subscriber is the order's customer without orders:admin, so every event goes
    through the owner rule (the hub finds the subscriptions kept for its customer).
(b) public: the same event declared `public=True`, anonymous subscribers, no filters.
(c) hand-written: a dict of event type -> list of asyncio.Queue, `put_nowait` to each.
Events go through `EventHub.publish` in-process (what the gateway's EventFeed calls for each
event from RabbitMQ), paced at 200 events/s; each subscriber is drained by its own task, as
a socket's is. When delivery cannot keep that pace the publisher does not wait, so the rate
becomes the fan-out's throughput. Per round: delivered events/s = subscribers x events /
(first publish to last delivery), the same over the process's CPU time (what the
deliveries cost, whatever else the shared machine runs), and the time `publish` itself takes
per event. After a warm-up round of each, the sides take turns at going first; medians over
rounds, and ratios are the medians of each round's ratio (the sides of a round share the
machine's mood). Goal: (a) within 10% of (b).
"""

import argparse
import asyncio
import gc
import statistics
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from time import perf_counter, process_time
from typing import Any

from bench.common import Goal, add_size_options, chosen_sizes, print_goals, print_table
from examples.orders.contracts import OrderLine, OrderPlaced
from gateway.auth import ANONYMOUS, Identity
from gateway.routes import RouteTable
from gateway.subscriptions import CAPACITY, EventHub
from pipelines import eventloop
from pipelines import headers as h
from pipelines.identity import Caller
from pipelines.registry import Audience, ContractInfo, describe

GOAL = 0.9  # audience-filtered delivery rate / unrestricted
CUSTOMER = "customer-1"
HEADERS = {h.GLOBAL_POSITION: "42", h.EVENT_ID: "e-1", h.CORRELATION_ID: "c-1"}
Publish = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Sizes:
    subscribers: int = 1000
    events: int = 200  # per round and side
    rate: int = 200  # events per second
    rounds: int = 12


QUICK = Sizes(events=100, rounds=6)


@dataclass
class Round:
    delivered_per_s: float
    delivered_per_cpu_s: float
    publish_us: float  # time in `publish`, per event


def wall(r: Round) -> float:
    return r.delivered_per_s


def cpu(r: Round) -> float:
    return r.delivered_per_cpu_s


@dataclass
class Side:
    name: str
    rounds: list[Round] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(r.delivered_per_s for r in self.rounds)

    @property
    def cpu_rate(self) -> float:
        return statistics.median(r.delivered_per_cpu_s for r in self.rounds)

    @property
    def publish_us(self) -> float:
        return statistics.median(r.publish_us for r in self.rounds)

    def ratio(self, other: "Side", rate: Callable[[Round], float]) -> float:
        """Median over rounds of this side's `rate` over `other`'s."""
        pairs = zip(self.rounds, other.rounds, strict=True)
        return statistics.median(rate(a) / rate(b) for a, b in pairs)


class Feed:
    """The part of the gateway's EventFeed a hub uses: no RabbitMQ here."""

    def __init__(self) -> None:
        self.listeners: list[Publish] = []

    async def bind(self, routing_key: str) -> None:
        pass


@dataclass
class State:
    routes: RouteTable
    feed: Feed = field(default_factory=Feed)


def event_data() -> dict[str, Any]:
    line = OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.50"))
    event = OrderPlaced(order_id="o-1", customer_id=CUSTOMER, items=[line], total=Decimal("7"))
    return event.model_dump(mode="json")


def contracts() -> dict[str, ContractInfo]:
    owned = describe(OrderPlaced)
    public = owned.model_copy(
        update={"required_permissions": [], "audience": Audience(public=True)}
    )
    return {"audience": owned, "public": public}


class Counter:
    """Deliveries so far, and an event set when all `expected` have arrived."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count, self.last = expected, 0, 0.0
        self.done = asyncio.Event()

    def tick(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.last = perf_counter()
            self.done.set()


async def hub_side(contract: ContractInfo, identity: Identity, sizes: Sizes) -> Round:
    state = State(RouteTable(events={"OrderPlaced": ("orders", contract)}))
    hub = EventHub(state)  # type: ignore[arg-type]  # only routes and feed are used
    counter = Counter(sizes.subscribers * sizes.events)
    subscriptions = [await hub.subscribe("OrderPlaced", identity) for _ in range(sizes.subscribers)]

    async def drain(subscription: Any) -> None:
        async for _ in subscription:
            counter.tick()

    tasks = [asyncio.create_task(drain(s)) for s in subscriptions]
    try:
        return await paced(hub.publish, counter, sizes)
    finally:
        for subscription in subscriptions:
            subscription.close()
        await asyncio.gather(*tasks)


async def hand_written_side(sizes: Sizes) -> Round:
    queues: list[asyncio.Queue[dict[str, Any] | None]] = [
        asyncio.Queue(CAPACITY) for _ in range(sizes.subscribers)
    ]
    by_type = {"OrderPlaced": queues}
    counter = Counter(sizes.subscribers * sizes.events)

    async def publish(event_type: str, data: dict[str, Any], _headers: dict[str, Any]) -> None:
        for queue in by_type.get(event_type, ()):
            queue.put_nowait(data)

    async def drain(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        while await queue.get() is not None:
            counter.tick()

    tasks = [asyncio.create_task(drain(q)) for q in queues]
    try:
        return await paced(publish, counter, sizes)
    finally:
        for queue in queues:
            queue.put_nowait(None)
        await asyncio.gather(*tasks)


async def paced(publish: Publish, counter: Counter, sizes: Sizes) -> Round:
    data, busy = event_data(), 0.0
    gc.collect()
    started, cpu_started = perf_counter(), process_time()
    for n in range(sizes.events):
        await asyncio.sleep(max(0.0, started + n / sizes.rate - perf_counter()))
        before = perf_counter()
        await publish("OrderPlaced", data, HEADERS)
        busy += perf_counter() - before
    await asyncio.wait_for(counter.done.wait(), timeout=60)
    cpu_s = process_time() - cpu_started
    return Round(
        counter.count / (counter.last - started),
        counter.count / cpu_s,
        busy / sizes.events * 1e6,
    )


async def run(sizes: Sizes) -> list[Side]:
    by_name = contracts()
    customer = Identity(Caller(CUSTOMER, permissions=frozenset({"orders:read"})), None)
    anyone = ANONYMOUS
    runs: list[tuple[Side, Callable[[], Awaitable[Round]]]] = [
        (Side("audience (owner rule)"), lambda: hub_side(by_name["audience"], customer, sizes)),
        (Side("public (no filter)"), lambda: hub_side(by_name["public"], anyone, sizes)),
        (Side("hand-written dict"), lambda: hand_written_side(sizes)),
    ]
    for _, op in runs:  # a warm-up round of each, not counted
        await op()
    for number in range(sizes.rounds):
        turn = number % len(runs)  # each side takes each place in the order in turn
        for side, op in runs[turn:] + runs[:turn]:
            side.rounds.append(await op())
    return [side for side, _ in runs]


def report(sides: list[Side], sizes: Sizes) -> None:
    audience, public, hand = sides
    print(
        f"\nFan-out of OrderPlaced to {sizes.subscribers:,} subscribers, paced at "
        f"{sizes.rate} events/s, {sizes.events} events x {sizes.rounds} rounds (medians)"
    )
    rows = [
        [
            s.name,
            f"{s.rate:,.0f}/s",
            f"{s.ratio(public, wall):.2f}",
            f"{s.cpu_rate:,.0f}/s",
            f"{s.ratio(public, cpu):.2f}",
            f"{s.publish_us:,.0f} us",
        ]
        for s in sides
    ]
    header = ["", "delivered", "vs public", "per CPU second", "vs public", "publish per event"]
    print_table(header, rows, indent="  ")
    by_cpu = public.ratio(hand, cpu)
    print(f"  public / hand-written: {public.ratio(hand, wall):.2f} (per CPU second: {by_cpu:.2f})")
    print_goals(
        [
            Goal("audience / public, delivered per second", audience.ratio(public, wall), GOAL),
            Goal("audience / public, per CPU second", audience.ratio(public, cpu), GOAL),
        ]
    )
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about 30 s)")
    add_size_options(parser, Sizes(), QUICK)
    args = parser.parse_args(argv)
    sizes = chosen_sizes(args, QUICK if args.quick else Sizes())
    report(eventloop.run(run(sizes)), sizes)  # both sides: the loop Banyan's processes run on


if __name__ == "__main__":
    main()
