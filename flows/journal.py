"""The journal of one run: every step it began, what was sent, and the answer once known.

Writes are first-writer-wins: when two drivers race on a step (a crashed owner's lease ran
out while it was still alive), both end up reading the same recorded answer.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from flows.outgoing import Outgoing
from pipelines.database import Pool

Phase = Literal["do", "undo", "failure"]
Status = Literal["pending", "done", "refused", "expired"]
COLUMNS = (
    "seq, run_id, phase, step, service, queue, message_type, message, message_id, undo, status, "
    "result, reason, deadline_at, attempts, last_error, begun_at, answered_at, acting_as"
)
WHERE_STEP = "run_id = $1 AND phase = $2 AND step = $3"


@dataclass(frozen=True, slots=True)
class StepRecord:
    seq: int
    run_id: str
    phase: Phase
    step: str
    outgoing: Outgoing
    message_id: str
    undo: Outgoing | None
    status: Status
    result: Any
    reason: str | None
    deadline_at: datetime | None
    attempts: int
    last_error: str | None
    begun_at: datetime
    answered_at: datetime | None
    acting_as: str  # whose identity it is sent with: a user's id, or service:{name}

    @property
    def settled(self) -> bool:
        return self.status != "pending"

    @property
    def may_have_happened(self) -> bool:
        """Anything but refused: a step without an answer may still take effect."""
        return self.status != "refused"

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "StepRecord":
        outgoing = Outgoing(row["service"], row["queue"], row["message_type"], row["message"])
        undo = Outgoing.from_json(row["undo"]) if row["undo"] else None
        return cls(
            row["seq"], row["run_id"], row["phase"], row["step"], outgoing, row["message_id"],
            undo, row["status"], row["result"], row["reason"], row["deadline_at"],
            row["attempts"], row["last_error"], row["begun_at"], row["answered_at"],
            row["acting_as"],
        )  # fmt: skip


class Journal:
    def __init__(self, pool: Pool, run_id: str, records: list[StepRecord]) -> None:
        self.pool = pool
        self.run_id = run_id
        self._records = {(r.phase, r.step): r for r in records}

    @classmethod
    async def load(cls, pool: Pool, run_id: str) -> "Journal":
        return cls(pool, run_id, await steps_of(pool, run_id))

    def get(self, phase: Phase, step: str) -> StepRecord | None:
        return self._records.get((phase, step))

    def to_undo(self) -> list[StepRecord]:
        """The steps to compensate, newest first."""
        undoable = [r for r in self._records.values() if r.phase == "do" and r.undo is not None]
        return sorted((r for r in undoable if r.may_have_happened), key=lambda r: -r.seq)

    async def begin(
        self, phase: Phase, step: str, outgoing: Outgoing, undo: Outgoing | None,
        deadline: float | None, acting_as: str,
    ) -> tuple[StepRecord, bool]:  # fmt: skip
        """The step's record (due `deadline` seconds from now, sent as `acting_as`), and
        whether this call made it."""
        row = await self.pool.fetchrow(
            "INSERT INTO flow_steps (run_id, phase, step, service, queue, message_type, message, "
            "message_id, undo, deadline_at, acting_as) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
            "$9, now() + make_interval(secs => $10::float8), $11) "
            f"ON CONFLICT (run_id, phase, step) DO NOTHING RETURNING {COLUMNS}",
            self.run_id, phase, step, outgoing.service, outgoing.queue, outgoing.message_type,
            json.dumps(outgoing.body), message_id(self.run_id, phase, step),
            json.dumps(undo.to_json()) if undo else None, deadline, acting_as,
        )  # fmt: skip
        if row is not None:
            return self._keep(StepRecord.from_row(row)), True
        return await self._reload(phase, step), False

    async def settle(
        self, record: StepRecord, status: Status, result: Any = None, reason: str | None = None
    ) -> StepRecord:
        row = await self.pool.fetchrow(
            "UPDATE flow_steps SET status = $4, result = $5, reason = $6, attempts = attempts + 1, "
            f"answered_at = now() WHERE {WHERE_STEP} AND status = 'pending' RETURNING {COLUMNS}",
            self.run_id, record.phase, record.step, status, json.dumps(result), reason,
        )  # fmt: skip
        if row is None:
            return await self._reload(record.phase, record.step)
        return self._keep(StepRecord.from_row(row))

    async def note_failure(self, record: StepRecord, error: str) -> StepRecord:
        """An attempt got no usable answer; the step stays pending (unless it was settled)."""
        row = await self.pool.fetchrow(
            "UPDATE flow_steps SET attempts = attempts + 1, last_error = $4 "
            f"WHERE {WHERE_STEP} AND status = 'pending' RETURNING {COLUMNS}",
            self.run_id, record.phase, record.step, error[:2000],
        )  # fmt: skip
        if row is None:
            return await self._reload(record.phase, record.step)
        return self._keep(StepRecord.from_row(row))

    async def _reload(self, phase: Phase, step: str) -> StepRecord:
        row = await self.pool.fetchrow(
            f"SELECT {COLUMNS} FROM flow_steps WHERE {WHERE_STEP}", self.run_id, phase, step
        )
        assert row is not None, f"step {phase}/{step} of {self.run_id} vanished"
        return self._keep(StepRecord.from_row(row))

    def _keep(self, record: StepRecord) -> StepRecord:
        self._records[(record.phase, record.step)] = record
        return record


def message_id(run_id: str, phase: Phase, step: str) -> str:
    """The idempotency key of a step: every attempt of it is one message to its receiver."""
    return f"{run_id}:{phase}:{step}"


async def steps_of(conn: Pool | asyncpg.Connection, run_id: str) -> list[StepRecord]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM flow_steps WHERE run_id = $1 ORDER BY seq", run_id
    )
    return [StepRecord.from_row(r) for r in rows]
