"""The `flow_runs` table: one row per run, with its status, wake-up time and lease.

A run is due when `wake_at` has passed and no live process holds its lease. Any process
hosting the flow may claim it; the claimant renews the lease while it drives the run, so
the runs of a process that died are claimed by another once their lease runs out.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from pipelines.database import Pool, delete_in_batches

Status = Literal["running", "compensating", "completed", "compensated", "failed"]
COLUMNS = (
    "id, flow, key, status, input, reason, correlation_id, causation_id, input_version, traceparent"
)
# SKIP LOCKED: engines sweeping at the same time take different rows instead of waiting.
# Only finished runs have a finished_at; their steps go with them (ON DELETE CASCADE).
EXPIRE_FINISHED_RUNS = (
    "DELETE FROM flow_runs WHERE id = ANY(ARRAY("
    "SELECT id FROM flow_runs WHERE finished_at < now() - make_interval(secs => $1) "
    "ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)


@dataclass(slots=True)
class RunRecord:
    id: str
    flow: str
    key: str
    status: Status
    input: dict[str, Any]
    reason: str | None
    correlation_id: str | None
    causation_id: str | None
    input_version: int  # the schema version of the event in `input`
    traceparent: str | None  # of the event that started it: its steps continue that trace
    # its lease passed to another process: this one takes no new step of it
    lost: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "RunRecord":
        return cls(*row.values())


def run_id(flow: str, key: str) -> str:
    return f"{flow}:{key}"


class RunTable:
    def __init__(self, pool: Pool | asyncpg.Connection) -> None:
        self.pool = pool

    async def start(
        self,
        flow: str,
        key: str,
        data: dict[str, Any],
        correlation_id: str,
        causation_id: str,
        version: int = 1,
        traceparent: str | None = None,
    ) -> bool:
        """Record a new run, due now; False if it exists (its event was delivered again).
        `data` is the starting event at schema `version` of its class; `traceparent` its trace."""
        status = await self.pool.execute(
            "INSERT INTO flow_runs (id, flow, key, input, input_version, correlation_id, "
            "causation_id, traceparent, wake_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) "
            "ON CONFLICT (id) DO NOTHING",
            run_id(flow, key), flow, key, json.dumps(data), version, correlation_id, causation_id,
            traceparent,
        )  # fmt: skip
        return bool(status.endswith(" 1"))

    async def claim(
        self, owner: str, lease: float, flows: list[str], limit: int, skip: list[str]
    ) -> list[RunRecord]:
        """Take the lease of up to `limit` due runs of these flows that nobody holds."""
        rows = await self.pool.fetch(
            "UPDATE flow_runs SET lease_owner = $1, "
            "lease_until = now() + make_interval(secs => $2) "
            "WHERE id IN (SELECT id FROM flow_runs WHERE wake_at <= now() "
            "AND flow = ANY($3::text[]) AND NOT id = ANY($5::text[]) "
            "AND (lease_until IS NULL OR lease_until < now()) "
            "ORDER BY wake_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
            f"AND (lease_until IS NULL OR lease_until < now()) RETURNING {COLUMNS}",
            owner, lease, flows, limit, skip,
        )  # fmt: skip
        return [RunRecord.from_row(r) for r in rows]

    async def renew(self, owner: str, lease: float, ids: list[str]) -> set[str]:
        """Extend the leases `owner` still holds among `ids`; returns those ids."""
        rows = await self.pool.fetch(
            "UPDATE flow_runs SET lease_until = now() + make_interval(secs => $2) "
            "WHERE lease_owner = $1 AND id = ANY($3::text[]) RETURNING id",
            owner, lease, ids,
        )  # fmt: skip
        return {row["id"] for row in rows}

    async def release(self, owner: str, ids: list[str]) -> None:
        """Give up runs without finishing them (a clean stop): others may claim them now."""
        await self.pool.execute(
            "UPDATE flow_runs SET lease_owner = NULL, lease_until = NULL "
            "WHERE lease_owner = $1 AND id = ANY($2::text[])",
            owner, ids,
        )  # fmt: skip

    async def suspend(self, run: str, owner: str, wake_at: datetime) -> None:
        """Nothing more to do before `wake_at` (a step waits for an answer or a retry)."""
        await self.pool.execute(
            "UPDATE flow_runs SET wake_at = $3, lease_owner = NULL, lease_until = NULL, "
            "updated_at = now() WHERE id = $1 AND lease_owner = $2 AND wake_at IS NOT NULL",
            run, owner, wake_at,
        )  # fmt: skip

    async def compensating(self, run: str, reason: str) -> str:
        """Record why the run failed; the reason recorded first stands."""
        await self.pool.execute(
            "UPDATE flow_runs SET status = 'compensating', reason = $2, updated_at = now() "
            "WHERE id = $1 AND status = 'running'",
            run, reason,
        )  # fmt: skip
        return str(await self.pool.fetchval("SELECT reason FROM flow_runs WHERE id = $1", run))

    async def finish(self, run: str, status: Status) -> None:
        await self.pool.execute(
            "UPDATE flow_runs SET status = $2, wake_at = NULL, lease_owner = NULL, "
            "lease_until = NULL, finished_at = now(), updated_at = now() "
            "WHERE id = $1 AND wake_at IS NOT NULL",
            run, status,
        )  # fmt: skip

    async def note_error(
        self, run: str, owner: str, error: str, first_delay: float, max_delay: float
    ) -> None:
        """A drive failed unexpectedly (a bug, a lost database): retry later, backing off."""
        await self.pool.execute(
            "UPDATE flow_runs SET errors = errors + 1, last_error = $3, "
            "wake_at = now() + make_interval(secs => least($5, $4 * 2 ^ errors)), "
            "lease_owner = NULL, lease_until = NULL, updated_at = now() "
            "WHERE id = $1 AND lease_owner = $2",
            run, owner, error[:2000], first_delay, max_delay,
        )  # fmt: skip

    async def expire_finished_runs(
        self, older_than: float, batch: int = 1000, batches: int = 10
    ) -> int:
        """Delete the runs that finished over `older_than` seconds ago and their steps, in at
        most `batches` short transactions of `batch` runs; returns how many runs were deleted."""
        return await delete_in_batches(
            self.pool, EXPIRE_FINISHED_RUNS, older_than, batch=batch, batches=batches
        )
