"""Flows in the test kit (`pipelines.testing.TestKit`): a run is driven to its end at once.

Its steps go to the kit's services through the flow's own code (the same journal rules,
refusals, compensation newest first, `on_failure`), its journal is kept in memory, and a step
that gets no answer (its service is not in the kit) has its deadline pass at once, so the
compensation that follows can be tested without waiting. A step with no deadline and no
answer would wait forever: the kit says so instead.
"""

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.drive import Drive, Suspended
from flows.flow import Flow
from flows.journal import Journal, Phase, Status, StepRecord, message_id
from flows.outgoing import Outgoing
from flows.run import FlowError
from flows.runs import RunRecord, RunTable, run_id
from flows.sender import Sender
from flows.settings import FlowSettings
from pipelines.context import Context
from pipelines.contracts import Event
from pipelines.dispatch import HandlerFn
from pipelines.runtime import Runtime


class MemoryJournal(Journal):
    def __init__(self, run: str) -> None:
        self.run_id = run
        self._records: dict[tuple[Phase, str], StepRecord] = {}
        self._seq = itertools.count(1)

    async def begin(
        self, phase: Phase, step: str, outgoing: Outgoing, undo: Outgoing | None,
        deadline: float | None, acting_as: str,
    ) -> tuple[StepRecord, bool]:  # fmt: skip
        known = self.get(phase, step)
        if known is not None:
            return known, False
        now = datetime.now(UTC)
        due = now + timedelta(seconds=deadline) if deadline is not None else None
        record = StepRecord(
            next(self._seq), self.run_id, phase, step, outgoing,
            message_id(self.run_id, phase, step), undo, "pending", None, None, due, 0, None,
            now, None, acting_as,
        )  # fmt: skip
        return self._keep(record), True

    async def settle(
        self, record: StepRecord, status: Status, result: Any = None, reason: str | None = None
    ) -> StepRecord:
        known = self._records[(record.phase, record.step)]
        if known.settled:  # first writer wins
            return known
        answer = {"status": status, "result": result, "reason": reason}
        answered = datetime.now(UTC)
        return self._keep(
            replace(known, **answer, attempts=known.attempts + 1, answered_at=answered)
        )

    async def note_failure(self, record: StepRecord, error: str) -> StepRecord:
        known = self._records[(record.phase, record.step)]
        if known.settled:
            return known
        return self._keep(replace(known, attempts=known.attempts + 1, last_error=error))

    def let_deadlines_pass(self) -> bool:
        """Move the steps waiting for an answer past their deadlines; False if none has one."""
        waiting = [r for r in self._records.values() if not r.settled and r.deadline_at]
        now = datetime.now(UTC)
        for record in waiting:
            assert record.deadline_at is not None
            early = record.deadline_at - now
            self._keep(replace(record, begun_at=record.begun_at - early, deadline_at=now))
        return bool(waiting)


class MemoryRuns(RunTable):
    """The one run a drive needs: its status and the reason it failed."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    async def compensating(self, run: str, reason: str) -> str:
        if self.record.status == "running":
            self.record.status, self.record.reason = "compensating", reason
        return self.record.reason or reason


def in_memory_starter(flow: Flow[Any], runtime: Runtime) -> HandlerFn:
    """What the kit runs for the flow's starting event: the run, to its end, once per key."""
    settings = FlowSettings()
    started: set[str] = set()

    async def start(event: Event, ctx: Context) -> None:
        key = flow.key(event)
        run = run_id(flow.name, key)
        if run in started:
            return
        started.add(run)
        causation = str(ctx.event.event_id) if ctx.event is not None else ctx.message_id
        data = event.model_dump(mode="json")
        correlation = ctx.correlation_id
        record = RunRecord(
            run, flow.name, key, "running", data, None, correlation, causation,
            type(event).__version__, ctx.traceparent,
        )  # fmt: skip
        journal = MemoryJournal(run)
        drive = Drive(flow, record, journal, MemoryRuns(record), Sender(runtime), settings)
        while isinstance(await drive.outcome(), Suspended):
            if not journal.let_deadlines_pass():
                raise FlowError(
                    f"flow run {run} waits for an answer that never comes: a step without a "
                    "deadline was sent to a service the kit does not run"
                )

    start.__name__ = f"start_{flow.name.replace('-', '_')}"
    return start
