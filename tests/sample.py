"""A small service whose handlers misbehave on purpose, for fault tests."""

import asyncio
import uuid

from pipelines import Aggregate, Command, Context, Event, Model, Service, applies


class Counted(Event, service="sample"):
    counter_id: str


class Increment(Command):
    counter_id: str


class Explode(Command):
    """Always raises: exercises retries and dead-lettering."""

    note: str = ""


class Dawdle(Command):
    seconds: float


class CountResult(Model):
    version: int
    count: int


class Counter(Aggregate):
    snapshot_every = 5
    count: int = 0

    @applies(Counted)
    def _counted(self, event: Counted) -> None:
        self.count += 1


service = Service("sample")
calls: dict[str, int] = {"explode": 0}
repaired: list[str] = []  # notes of Explode commands that stop failing (the "fix")
recovered: list[str] = []  # notes of Explode commands handled after the fix
causes: dict[str, str | None] = {}  # counter id -> causation id of its last Increment
dawdling = {"now": 0, "most": 0}  # Dawdle handlers running at once, now and at most


@service.command(Increment)
async def increment(command: Increment, ctx: Context) -> CountResult:
    causes[command.counter_id] = ctx.causation_id
    counter = await ctx.load(Counter, command.counter_id)
    counter.record(Counted(counter_id=command.counter_id))
    return CountResult(version=counter.version, count=counter.count)


@service.command(Explode)
async def explode(command: Explode, ctx: Context) -> str:
    calls["explode"] += 1
    if command.note in repaired:
        recovered.append(command.note)
        return "repaired"
    raise RuntimeError(f"boom: {command.note}")


@service.command(Dawdle)
async def dawdle(command: Dawdle, ctx: Context) -> str:
    dawdling["now"] += 1
    dawdling["most"] = max(dawdling["most"], dawdling["now"])
    try:
        await asyncio.sleep(command.seconds)
    finally:
        dawdling["now"] -= 1
    return "done"


class Unreachable(Command):
    """Raises an OSError of the handler's own (say, a peer it calls went away), forever."""

    note: str = ""


class Permissive(Command):
    """Guarded by a policy that falls off its end (returns None)."""


unreachable_calls: dict[str, int] = {}


@service.command(Unreachable)
async def unreachable(command: Unreachable, ctx: Context) -> str:
    unreachable_calls[command.note] = unreachable_calls.get(command.note, 0) + 1
    raise ConnectionResetError(f"the peer of {command.note} went away")


def forgets_to_answer(command: Permissive, ctx: Context) -> bool:
    """A buggy policy: it means to refuse, but returns nothing."""
    return None  # type: ignore[return-value]


@service.command(Permissive, policies=[forgets_to_answer])
async def permissive(command: Permissive, ctx: Context) -> str:
    return "allowed"


class Nudged(Event, service="sample"):
    """Published by the tests straight to the `tally` subscriber's queue."""

    tally_id: str
    linger: float = 0.0  # seconds the subscriber waits between reading and recording
    fresh: bool = False  # record on a new aggregate (no version to clash on)


class Tallied(Event, service="sample"):
    tally_id: str


class Tally(Aggregate):
    @applies(Tallied)
    def _tallied(self, event: Tallied) -> None:
        pass


@service.on(Nudged)
async def tally(event: Nudged, ctx: Context) -> None:
    aggregate_id = f"{event.tally_id}-{uuid.uuid4().hex}" if event.fresh else event.tally_id
    tally = await ctx.load(Tally, aggregate_id)
    await asyncio.sleep(event.linger)
    tally.record(Tallied(tally_id=event.tally_id))
