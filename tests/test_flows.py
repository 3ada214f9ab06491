"""The order fulfilment flow end to end: the happy path, each compensation, a deadline,
duplicate answers, a process killed at every gap of a run, and 200 orders racing for stock."""

import asyncio
import contextlib
import functools
import os
import random
import re
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

# Before the engines read them: fast ticks, and a crashed process's runs resume within a second.
os.environ.update(
    {
        "FLOWS_TICK_INTERVAL": "0.1",
        "FLOWS_LEASE": "1",
        "FLOWS_RETRY_INITIAL_DELAY": "0.05",
        "FLOWS_RETRY_MAX_DELAY": "0.5",
    }
)

import pytest

import flows
from examples.fulfilment import service as fulfilment_service
from examples.fulfilment.settings import settings as fulfilment_settings
from examples.inventory import service as inventory_service
from examples.inventory.contracts import AddStock, GetStock
from examples.orders.contracts import PlaceOrder
from flows import Flow, Run
from flows.journal import steps_of
from flows.runs import RunTable, run_id
from pipelines import Aggregate, Command, Conflict, Context, Event, Service, applies
from pipelines.cli import parser
from pipelines.settings import get_settings
from tests.conftest import FULFILMENT_TRIGGERS, eventually, purge, started

STAFF = ("inventory:manage", "inventory:read")
FINAL_EVENTS = ("OrderConfirmed", "OrderRejected")


class Shop:
    """Stock and orders through the services' contracts, and what the log says of them."""

    def __init__(self, rpc, token, pool) -> None:
        self.rpc, self.pool = rpc, pool
        self.auth = token("shopkeeper", *STAFF)
        self.customer = token("shopper", "orders:place")  # whom the shop's orders are for

    async def sku(self, units: int) -> str:
        sku = f"sku-{uuid.uuid4().hex[:8]}"
        added = await self.rpc.send("inventory", AddStock(sku=sku, quantity=units), token=self.auth)
        added.result()
        return sku

    async def place(self, *lines: tuple[str, int], correlation: str | None = None) -> str:
        items = [{"sku": sku, "quantity": n, "unitPrice": "1.00"} for sku, n in lines]
        command = PlaceOrder.model_validate({"items": items})
        headers = {"x-correlation-id": correlation} if correlation else {}
        reply = await self.rpc.send("orders", command, token=self.customer, **headers)
        return str(reply.result()["orderId"])

    async def stock(self, sku: str) -> dict[str, Any]:
        reply = await self.rpc.send("inventory", GetStock(sku=sku), token=self.auth)
        stock: dict[str, Any] = reply.result()
        return stock

    async def finished(self, *orders: str) -> bool:
        done = await self.pool.fetchval(
            "SELECT count(*) FROM flow_runs WHERE key = ANY($1::text[]) "
            "AND finished_at IS NOT NULL",
            list(orders),
        )
        return bool(done == len(orders))

    async def run(self, order: str) -> dict[str, Any]:
        return dict(await self.pool.fetchrow("SELECT * FROM flow_runs WHERE key = $1", order))

    async def final_events(self, order: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT event_type, data FROM events WHERE aggregate_id = $1 "
            "AND event_type = ANY($2::text[])",
            order, list(FINAL_EVENTS),
        )  # fmt: skip
        return [{"type": r["event_type"], **r["data"]} for r in rows]

    async def reservations_made(self, sku: str) -> dict[str, int]:
        """How many times each order had units of `sku` reserved, per the log."""
        rows = await self.pool.fetch(
            "SELECT data->>'orderId' AS order_id, count(*) AS times FROM events "
            "WHERE aggregate_id = $1 AND event_type = 'StockReserved' GROUP BY 1",
            sku,
        )
        return {r["order_id"]: r["times"] for r in rows}


@pytest.fixture
def shop(orders, rpc, token) -> Shop:
    return Shop(rpc, token, orders.runtime.pool)


async def test_all_lines_reserved_confirms_the_order(shop, inventory, fulfilment) -> None:
    apples, pears = await shop.sku(10), await shop.sku(10)
    correlation = uuid.uuid4().hex
    order = await shop.place((apples, 2), (pears, 1), (apples, 1), correlation=correlation)
    await eventually(lambda: shop.finished(order), what="the run to finish")

    run = await shop.run(order)
    assert (run["status"], run["reason"]) == ("completed", None)
    assert [e["type"] for e in await shop.final_events(order)] == ["OrderConfirmed"]
    assert (await shop.stock(apples))["reservations"] == {order: 3}  # two lines, one hold
    assert (await shop.stock(pears))["available"] == 9

    steps = await steps_of(shop.pool, run["id"])
    assert {s.step: s.status for s in steps} == {
        f"reserve {apples}": "done", f"reserve {pears}": "done", "ConfirmOrder": "done",
    }  # fmt: skip
    events = await shop.pool.fetch(
        "SELECT event_id, event_type, causation_id FROM events WHERE correlation_id = $1 "
        "ORDER BY position",
        correlation,
    )
    assert sorted(e["event_type"] for e in events) == [
        "OrderConfirmed", "OrderPlaced", "StockReserved", "StockReserved",
    ]  # fmt: skip
    placed = next(e for e in events if e["event_type"] == "OrderPlaced")
    assert run["causation_id"] == str(placed["event_id"])  # the flow's sends are caused by it
    caused_by_steps = {e["causation_id"] for e in events if e is not placed}
    assert caused_by_steps == {s.message_id for s in steps}  # each event by its step's command


async def test_banyan_flows_list_and_show(shop, inventory, fulfilment, capsys) -> None:
    apples = await shop.sku(1)
    order = await shop.place((apples, 2))
    await eventually(lambda: shop.finished(order), what="the run to finish")
    run_id = f"order-fulfilment:{order}"

    assert await cli("flows", "show", order) == 0
    shown = capsys.readouterr().out
    assert f"{run_id}  compensated" in shown
    assert f"reason       only 1 of {apples} available, 2 wanted" in shown
    for phase, step, sends, status in [
        ("do", f"reserve {apples}", "inventory ReserveStock", "refused"),
        ("failure", "RejectOrder", "orders RejectOrder", "done"),
    ]:
        assert re.search(rf"\b{phase} +{step} +{sends} +{status} +1 ", shown), shown
    assert await cli("flows", "list", "--status", "compensated", "--limit", "500") == 0
    assert run_id in capsys.readouterr().out
    assert await cli("flows", "show", "no-such-run") == 1


async def cli(*argv: str) -> int:
    args = parser().parse_args(argv)
    return int(await args.run(get_settings(), args))


@pytest.mark.parametrize("trouble", ["shortage", "unknown sku"])
async def test_a_refused_line_releases_the_others_and_rejects_the_order(
    shop, inventory, fulfilment, trouble
) -> None:
    apples = await shop.sku(10)
    other = await shop.sku(1) if trouble == "shortage" else "no-such-sku"
    order = await shop.place((apples, 4), (other, 2))
    await eventually(lambda: shop.finished(order), what="the run to finish")

    reason = (
        f"only 1 of {other} available, 2 wanted"
        if trouble == "shortage"
        else "there is no stock of no-such-sku"
    )
    run = await shop.run(order)
    assert (run["status"], run["reason"]) == ("compensated", reason)
    [rejected] = await shop.final_events(order)
    assert (rejected["type"], rejected["reason"]) == ("OrderRejected", reason)
    apples_now = await shop.stock(apples)
    assert (apples_now["available"], apples_now["reservations"]) == (10, {})
    steps = {(s.phase, s.step): s.status for s in await steps_of(shop.pool, run["id"])}
    assert steps == {
        ("do", f"reserve {apples}"): "done",
        ("do", f"reserve {other}"): "refused",
        ("undo", f"undo reserve {apples}"): "done",
        ("failure", "RejectOrder"): "done",
    }


async def test_a_reservation_past_its_deadline_is_compensated(
    settings, shop, fulfilment, monkeypatch
) -> None:
    """Inventory is down: the reservation expires, and its undo waits until inventory is back."""
    stockroom = await started(inventory_service, settings)
    apples = await shop.sku(10)
    await stockroom.stop()
    monkeypatch.setattr(fulfilment_settings, "reserve_within", 1.0)
    order = await shop.place((apples, 3))
    run_id = f"order-fulfilment:{order}"

    async def expired_and_undoing() -> bool:
        steps = {s.step: s.status for s in await steps_of(shop.pool, run_id)}
        return steps == {f"reserve {apples}": "expired", f"undo reserve {apples}": "pending"}

    await eventually(expired_and_undoing, what="the reservation to expire")
    assert (await shop.run(order))["status"] == "compensating"
    stockroom = await started(inventory_service, settings)  # the late reservation arrives now
    try:
        await eventually(lambda: shop.finished(order), what="the compensation to finish")
        reason = "inventory did not answer ReserveStock within 1s"
        assert (await shop.run(order))["reason"] == reason
        [rejected] = await shop.final_events(order)
        assert (rejected["type"], rejected["reason"]) == ("OrderRejected", reason)
        apples_now = await shop.stock(apples)
        assert (apples_now["available"], apples_now["reservations"]) == (10, {})
    finally:
        await stockroom.stop()


async def test_200_concurrent_orders_competing_for_scarce_stock_never_oversell(
    settings, shop, inventory, monkeypatch
) -> None:
    """Two process managers whose leases lapse between ticks: they keep taking runs from each
    other, so steps are sent twice at once and answered twice; each order still ends once."""
    monkeypatch.setenv("FLOWS_LEASE", "0.02")
    supply = {await shop.sku(60): 60, await shop.sku(40): 40}
    pick = random.Random(200)
    baskets = [
        [(sku, pick.randint(1, 3)) for sku in pick.sample(list(supply), pick.randint(1, 2))]
        for _ in range(200)
    ]
    engines = [await started(fulfilment_service, settings) for _ in range(2)]
    try:
        orders = await asyncio.gather(*(shop.place(*basket) for basket in baskets))
        await eventually(lambda: shop.finished(*orders), timeout=90, what="200 runs to finish")
    finally:
        await asyncio.gather(*(engine.stop() for engine in engines))

    confirmed = set()
    for order in orders:
        [final] = await shop.final_events(order)  # exactly one final state each
        if final["type"] == "OrderConfirmed":
            confirmed.add(order)
    assert 0 < len(confirmed) < len(orders)  # the stock really was scarce
    for sku, units in supply.items():
        stock = await shop.stock(sku)
        held = {o: n for o, basket in zip(orders, baskets, strict=True) if o in confirmed
                for s, n in basket if s == sku}  # fmt: skip
        assert stock["reservations"] == held  # confirmed orders hold theirs, nobody else does
        assert stock["reserved"] == sum(held.values()) <= units
        assert stock["available"] + stock["reserved"] == units
        assert set((await shop.reservations_made(sku)).values()) <= {1}  # never twice


class Opened(Event, service="claims"):
    claim_id: str


class Claimed(Event, service="claims"):
    claim_id: str


class Open(Command):
    claim_id: str


class Claim(Command):
    claim_id: str


class Claimable(Aggregate):
    claimed: bool = False

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        pass

    @applies(Claimed)
    def _claimed(self, event: Claimed) -> None:
        self.claimed = True


claims = Service("claims")
gates = [asyncio.Event(), asyncio.Event()]  # deliveries of Claim wait at theirs, in turn
arrived: list[str] = []


@claims.command(Open)
async def open_claim(command: Open, ctx: Context) -> None:
    ctx.create(Claimable, command.claim_id).record(Opened(claim_id=command.claim_id))


@claims.command(Claim)
async def claim(command: Claim, ctx: Context) -> str:
    arrived.append(ctx.message_id)
    await gates[len(arrived) - 1].wait()
    claimable = await ctx.load(Claimable, command.claim_id)
    if claimable.claimed:
        raise Conflict(f"{command.claim_id} is already claimed")
    claimable.record(Claimed(claim_id=command.claim_id))
    return "claimed"


claiming = Flow("claiming", starts_with=Opened, key=lambda opened: opened.claim_id)


@claiming.steps
async def claim_it(opened: Opened, run: Run) -> None:
    await run.send("claims", Claim(claim_id=opened.claim_id))


claimer = Service("claimer", migrations=flows.MIGRATIONS, calls=[Claim])
flows.host(claimer, claiming)


async def test_a_refusal_from_a_losing_duplicate_is_not_believed(settings, shop, rpc) -> None:
    """Two copies of a step's message (a resend after a reply timeout, or two drivers of one
    run) are both past the receiver's duplicate check when the first commits; the second is
    refused because of the first's effect. The step's answer is the first's, not a refusal."""
    arrived.clear()
    for gate in gates:
        gate.clear()
    services = [await started(claims, settings), await started(claimer, settings)]
    try:
        key, as_the_flow = uuid.uuid4().hex, await services[1].runtime.service_token()
        copy = asyncio.create_task(
            rpc.send(
                "claims",
                Claim(claim_id=key),
                token=as_the_flow,
                message_id=f"claiming:{key}:do:Claim",
            )
        )
        await eventually(lambda: len(arrived) == 1, what="the first copy")
        (await rpc.send("claims", Open(claim_id=key))).result()  # the flow sends the second
        await eventually(lambda: len(arrived) == 2, what="the flow's copy")
        gates[0].set()
        assert (await copy).result() == "claimed"
        gates[1].set()  # the flow's copy now finds the claim made: CONFLICT
        await eventually(lambda: shop.finished(key), what="the run to finish")
        assert (await shop.run(key))["status"] == "completed"
        [step] = await steps_of(shop.pool, f"claiming:{key}")
        assert (step.status, step.result) == ("done", "claimed")
    finally:
        await asyncio.gather(*(service.stop() for service in services))


stalled = asyncio.Event()  # the stalling flow's drive waits for it before its only step
stalling = Flow("stalling", starts_with=Opened, key=lambda opened: opened.claim_id)


@stalling.steps
async def stall_then_claim(opened: Opened, run: Run) -> None:
    await stalled.wait()
    await run.send("claims", Claim(claim_id=opened.claim_id))


staller = Service("staller", migrations=flows.MIGRATIONS, calls=[Claim])
stalling_host = flows.host(staller, stalling)


async def test_an_engine_whose_lease_passed_to_another_takes_no_new_step(settings, caplog) -> None:
    instance = await started(staller, settings)
    key = uuid.uuid4().hex
    run = run_id("stalling", key)
    pool = instance.runtime.pool
    assert pool is not None  # a started instance has its pool
    try:
        await RunTable(pool).start("stalling", key, {"claimId": key}, key, key)
        (engine,) = stalling_host.engines
        engine.wake()
        await eventually(lambda: run in engine.driving, what="the engine to drive the run")
        await pool.execute(  # it stalled past its lease, and another process took the run
            "UPDATE flow_runs SET lease_owner = 'elsewhere', "
            "lease_until = now() + interval '1 hour' WHERE id = $1",
            run,
        )
        engine.wake()  # its next renewal finds the lease gone
        await eventually(lambda: engine.lost(run), what="the renewal to notice")
        stalled.set()  # the drive goes on to its step
        await eventually(lambda: run not in engine.driving, what="the drive to end")
        assert f"flow run {run}: its lease passed to another process; stepped down" in caplog.text
        assert await steps_of(pool, run) == []  # the step was left to the new owner
    finally:
        stalled.set()
        await instance.stop()


# A process that forks service processes on demand: each starts in a fraction of a second
# (the imports are done once). A child given "POINT K" dies by SIGKILL when the first run it
# starts reaches POINT for the K-th time; runs it did not start (recovered ones) it drives
# normally. Given "- 0" it never crashes.
ZYGOTE = """
import asyncio, ctypes, os, signal, sys
from examples.fulfilment import service
from flows import crashpoints

def crash_at(gap, k):
    target, seen = None, 0
    def hook(point, run_id):
        nonlocal target, seen
        if target is None and point == "started":
            target = run_id
        if run_id == target and point == gap:
            seen += 1
            if seen == k:
                print("crash", point, run_id, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
    return hook

async def serve():
    await service.instance().start()
    print("up", os.getpid(), flush=True)
    await asyncio.Event().wait()

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
print("ready", flush=True)
for line in sys.stdin:
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the zygote
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        point, k = line.split()
        if point != "-":
            crashpoints.inject(crash_at(point, int(k)))
        try:
            asyncio.run(serve())
        finally:
            os._exit(1)
"""


class Zygote:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.children: list[int] = []
        self.crashes: list[tuple[str, str]] = []  # (point, run id) where children died

    @classmethod
    async def start(cls, log: Path) -> "Zygote":
        env = {**os.environ, "RELAY_ENABLED": "false", "LOG_LEVEL": "WARNING"}
        with log.open("ab") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", ZYGOTE, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=errors,
            )  # fmt: skip
        zygote = cls(process)
        assert await zygote._line() == "ready"
        return zygote

    async def fork(self, point: str = "-", k: int = 0) -> int:
        """A new fulfilment process, consuming once this returns its pid."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{point} {k}\n".encode())
        while (line := (await self._line()).split())[0] == "crash":
            self.crashes.append((line[1], line[2]))
        assert line[0] == "up", line
        self.children.append(int(line[1]))
        return int(line[1])

    async def _line(self) -> str:
        assert self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), 60)).decode().strip()

    async def close(self) -> None:
        """Kill the children still alive, then let the zygote end."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.wait_for(self.process.wait(), 30)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def crash_points(steps: int, compensated: bool) -> Counter[str]:
    """The gaps of a run: started, 3 per step, compensating (if it failed), finished."""
    per_step = {"journaled": steps, "answered": steps, "settled": steps}
    return Counter({"started": 1, **per_step, "compensating": int(compensated), "finished": 1})


def every(gaps: Counter[str]) -> list[tuple[str, int]]:
    """Each gap as (point, k): the k-th time a run reaches that point."""
    return [(point, k) for point, count in gaps.items() for k in range(1, count + 1)]


# (stock of the second SKU, final event, gaps of a run: 2 reservations + confirm, or
# 2 reservations + 1 release + reject)
PATHS = {
    "confirmed": (50, "OrderConfirmed", crash_points(3, compensated=False)),
    "rejected": (1, "OrderRejected", crash_points(4, compensated=True)),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", list(PATHS))
async def test_killed_between_any_two_steps_every_order_ends_once(
    settings, shop, inventory, tmp_path, path
) -> None:
    """For each gap of a run, a process is killed there in one run; the next one recovers it."""
    second_units, final, gaps = PATHS[path]
    apples, pears = await shop.sku(50), await shop.sku(second_units)
    await purge(settings, FULFILMENT_TRIGGERS[0])
    zygote = await Zygote.start(tmp_path / "fulfilment.log")
    orders: list[str] = []
    try:
        for point, k in every(gaps):
            pid = await zygote.fork(point, k)
            orders.append(await shop.place((apples, 1), (pears, 2), (apples, 1)))
            died = functools.partial(gone, pid)
            await eventually(died, timeout=30, what=f"a crash at {point} #{k}")
        await zygote.fork()  # it reports the last crash, then recovers every run left
        await eventually(lambda: shop.finished(*orders), timeout=60, what="every run to finish")
    finally:
        await zygote.close()

    runs = [f"order-fulfilment:{order}" for order in orders]
    died_at = [(point, run) for (point, _), run in zip(every(gaps), runs, strict=True)]
    assert zygote.crashes == died_at  # each process died at its gap, in its own run
    for order, run in zip(orders, runs, strict=True):
        assert [e["type"] for e in await shop.final_events(order)] == [final]
        assert len(await steps_of(shop.pool, run)) == gaps["settled"]
    apples_now, pears_now = await shop.stock(apples), await shop.stock(pears)
    if path == "confirmed":
        assert apples_now["reservations"] == {order: 2 for order in orders}
        assert pears_now["reservations"] == {order: 2 for order in orders}
    else:
        assert (apples_now["available"], apples_now["reservations"]) == (50, {})
        assert (pears_now["available"], pears_now["reservations"]) == (1, {})
    assert set((await shop.reservations_made(apples)).values()) == {1}  # never twice
