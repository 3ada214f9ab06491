"""One drive of a claimed run: replay its steps, compensate if one failed, say how it ended."""

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows import crashpoints
from flows.flow import Flow
from flows.journal import Journal, Phase
from flows.run import Run, StepFailed, Suspend
from flows.runs import RunRecord, RunTable, Status
from flows.sender import Sender
from flows.settings import FlowSettings
from pipelines.contracts import Event
from pipelines.upcasting import read_event


@dataclass(frozen=True, slots=True)
class Finished:
    status: Status


@dataclass(frozen=True, slots=True)
class Suspended:
    wake_at: datetime


class Drive:
    def __init__(
        self,
        flow: Flow[Any],
        record: RunRecord,
        journal: Journal,
        runs: RunTable,
        sender: Sender,
        settings: FlowSettings,
    ) -> None:
        self.flow = flow
        self.record = record
        self.journal = journal
        self.runs = runs
        self.sender = sender
        self.settings = settings

    async def outcome(self) -> Finished | Suspended:
        try:
            return Finished(await self._to_the_end())
        except Suspend as pause:
            return Suspended(pause.wake_at)

    async def _to_the_end(self) -> Status:
        if self.record.status == "running":
            assert self.flow.run_steps is not None
            try:
                await self.flow.run_steps(self._input, self._run("do"))
                return "completed"
            except StepFailed as failure:
                self.record.reason = await self.runs.compensating(self.record.id, failure.reason)
                crashpoints.reached("compensating", self.record.id)
        await self._compensate()
        return await self._fail(self.record.reason or "")

    async def _compensate(self) -> None:
        """Undo every step that may have happened, newest first; refusals change nothing."""
        run = self._run("undo")
        for step in self.journal.to_undo():
            assert step.undo is not None
            await run.perform(f"undo {step.step}", step.undo, None, None, acting_as=step.acting_as)

    async def _fail(self, reason: str) -> Status:
        if self.flow.failure is None:
            return "compensated"
        try:
            await self.flow.failure(self._input, self._run("failure"), reason)
        except StepFailed:
            return "failed"  # compensated, but what it had to do on failure was refused
        return "compensated"

    @functools.cached_property
    def _input(self) -> Event:
        """The event that started the run, as the flow's trigger class reads it now (once)."""
        event: Event = read_event(self.flow.trigger, self.record.input, self.record.input_version)
        return event

    def _run(self, phase: Phase) -> Run:
        acts_for = self.flow.acts_for
        user = acts_for(self._input) if acts_for is not None else None
        return Run(self.record, self.journal, self.sender, self.settings, phase, user)
