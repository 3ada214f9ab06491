"""What a flow's functions are given: `run.send` for a step, `run.all` for steps side by side.

The functions run again from the top after every crash and wake-up; a step already answered
returns its recorded answer at once instead of being sent again. So they must decide from
their input and their steps' answers only: no clocks, no randomness, no reads of their own.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast, overload

from pydantic import BaseModel

from flows import crashpoints
from flows.answers import NoAnswer, Refusal, judge
from flows.journal import Journal, Phase, StepRecord
from flows.outgoing import Outgoing
from flows.runs import RunRecord
from flows.sender import Sender
from flows.settings import FlowSettings
from pipelines.calls import UndeclaredCall
from pipelines.contracts import Contract

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class FlowError(Exception):
    """A flow is declared or written wrongly (a bug to fix, not a business outcome)."""


class StepFailed(Exception):
    """A step was refused, or got no answer by its deadline: the flow is compensated."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


class SteppedDown(BaseException):
    """The run's lease passed to another process, which drives it now: this drive stops at
    its next new step (the step in flight finishes; the journal keeps the first answer)."""


class Suspend(BaseException):
    """A step has no answer yet: the run sleeps until `wake_at`, then is replayed.

    A BaseException, like asyncio.CancelledError, so a flow's `except Exception` cannot eat it.
    """

    def __init__(self, wake_at: datetime) -> None:
        super().__init__(wake_at.isoformat())
        self.wake_at = wake_at


def _as_is(value: Any) -> Any:
    return value


class Run:
    def __init__(
        self,
        record: RunRecord,
        journal: Journal,
        sender: Sender,
        settings: FlowSettings,
        phase: Phase = "do",
        user: str | None = None,
    ) -> None:
        self.record = record
        self.journal = journal
        self.sender = sender
        self.settings = settings
        self.phase = phase
        self.user = user  # whom the run acts for (`Flow(acts_for=...)`)
        self._names: set[str] = set()

    @property
    def id(self) -> str:
        return self.record.id

    @overload
    async def send(
        self, service: str, message: Contract, *, step: str | None = None,
        undo: Contract | None = None, deadline: float | None = None, returns: type[M],
        refusal: Callable[[M], str | None] | None = None, as_service: bool = False,
    ) -> M: ...  # fmt: skip

    @overload
    async def send(
        self, service: str, message: Contract, *, step: str | None = None,
        undo: Contract | None = None, deadline: float | None = None, returns: None = None,
        refusal: Refusal | None = None, as_service: bool = False,
    ) -> Any: ...  # fmt: skip

    async def send(
        self,
        service: str,
        message: Contract,
        *,
        step: str | None = None,
        undo: Contract | None = None,
        deadline: float | None = None,
        returns: type[BaseModel] | None = None,
        refusal: Refusal | None = None,
        as_service: bool = False,
    ) -> Any:
        """Send `message` to `service` once, however often the run is replayed; its answer.

        `step` names it in the run (default: the message type). `undo` (sent to the same
        service) reverses it if a later step fails; it must be harmless if the step never
        happened, or happens after it. Without an answer within `deadline` seconds the step
        fails; with no deadline it is retried until answered. Raises StepFailed if the
        receiver refuses: an error reply, or an answer `refusal` gives a reason for.
        It is sent as the user the run acts for, or as the service with `as_service=True`
        (or when the flow acts for nobody); the journal records which.
        """
        name = step or message.message_type()
        read: Callable[[Any], Any] = returns.model_validate if returns is not None else _as_is
        try:
            self.sender.declared(message, undo)
        except UndeclaredCall as exc:
            raise StepFailed(name, exc.message) from None
        record = await self.perform(
            name,
            Outgoing.of(service, message),
            Outgoing.of(service, undo) if undo is not None else None,
            deadline,
            read,
            refusal,
            acting_as=self.sender.service if as_service or self.user is None else self.user,
        )
        if record.status != "done":
            raise StepFailed(name, record.reason or record.status)
        return read(record.result)

    async def all(self, steps: Iterable[Awaitable[T]]) -> list[T]:
        """Run steps side by side; once every one has settled, raise the first failure."""
        outcomes = await asyncio.gather(*steps, return_exceptions=True)
        pauses = [o for o in outcomes if isinstance(o, Suspend)]
        if pauses:
            raise min(pauses, key=lambda pause: pause.wake_at)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return cast(list[T], outcomes)

    async def perform(
        self,
        name: str,
        outgoing: Outgoing,
        undo: Outgoing | None,
        deadline: float | None,
        read: Callable[[Any], Any] = _as_is,
        refusal: Refusal | None = None,
        *,
        acting_as: str,
    ) -> StepRecord:
        """The step's settled record: as recorded before, or sent (again) and answered now."""
        if name in self._names:
            raise FlowError(f"{self.id} uses the step name {name!r} twice; pass step=")
        self._names.add(name)
        record = self.journal.get(self.phase, name)
        if record is None:
            if self.record.lost:
                raise SteppedDown(self.id)
            record, new = await self.journal.begin(
                self.phase, name, outgoing, undo, deadline, acting_as
            )
            if new:
                crashpoints.reached("journaled", self.id)
        while not record.settled:
            record = await self._attempt(record, read, refusal)
        return record

    async def _attempt(
        self, record: StepRecord, read: Callable[[Any], Any], refusal: Refusal | None
    ) -> StepRecord:
        now = datetime.now(UTC)
        if record.deadline_at is not None and now >= record.deadline_at:
            return await self.journal.settle(record, "expired", reason=_no_answer(record))
        try:
            response = await self.sender.ask(self.record, record, self._patience(record, now))
            crashpoints.reached("answered", self.id)
            status, result, reason = judge(response, read, refusal)
        except NoAnswer as exc:
            record = await self.journal.note_failure(record, str(exc))
            if record.settled:  # another driver recorded the answer meanwhile
                return record
            raise Suspend(self._retry_at(record)) from None
        settled = await self.journal.settle(record, status, result, reason)
        crashpoints.reached("settled", self.id)
        return settled

    def _patience(self, record: StepRecord, now: datetime) -> float:
        """How long this attempt waits for its answer: never past the step's deadline."""
        if record.deadline_at is None:
            return self.settings.reply_timeout
        left = (record.deadline_at - now).total_seconds()
        return max(0.01, min(self.settings.reply_timeout, left))

    def _retry_at(self, record: StepRecord) -> datetime:
        delay = timedelta(seconds=self.settings.retry_delay(record.attempts))
        retry = datetime.now(UTC) + delay
        return min(retry, record.deadline_at) if record.deadline_at else retry


def _no_answer(record: StepRecord) -> str:
    assert record.deadline_at is not None
    seconds = (record.deadline_at - record.begun_at).total_seconds()
    return (
        f"{record.outgoing.service} did not answer {record.outgoing.message_type} "
        f"within {seconds:g}s"
    )
