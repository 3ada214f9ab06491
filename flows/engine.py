"""Drives flow runs in one service process: claims those due, renews their leases while it
drives them, and records how each drive ended. One engine per process; any number of processes.
Now and then each one also deletes the runs that finished longer ago than FLOWS_RUN_RETENTION.
"""

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flows import crashpoints
from flows.drive import Drive, Finished, Suspended
from flows.flow import Flow
from flows.journal import Journal
from flows.run import SteppedDown
from flows.runs import RunRecord, RunTable
from flows.sender import Sender
from flows.settings import FlowSettings
from pipelines.instance import ServiceInstance
from pipelines.pacing import Pacer
from pipelines.retry import INFRASTRUCTURE_ERRORS

log = logging.getLogger("banyan.flows")


class Engine:
    def __init__(
        self, flows: Mapping[str, Flow[Any]], instance: ServiceInstance, settings: FlowSettings
    ) -> None:
        assert instance.runtime.pool is not None, "the service instance is not started"
        self.flows = flows
        self.settings = settings
        self.owner = instance.instance_id
        self.pool = instance.runtime.pool
        self.runs = RunTable(self.pool)
        self.sender = Sender(instance.runtime)
        self.driving: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, RunRecord] = {}  # of the runs being driven
        self._wake = asyncio.Event()
        self._sweep: asyncio.Task[None] | None = None
        self._run_sweeps = Pacer()

    def wake(self) -> None:
        """Look for due runs now rather than at the next tick (a run was just started)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._tick()
                self.expire_finished_runs_now_and_then()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.tick_interval)
                self._wake.clear()
        finally:
            await self._stop()

    async def _tick(self) -> None:
        try:
            if self.driving:
                held = await self.runs.renew(self.owner, self.settings.lease, list(self.driving))
                self._lose(set(self.driving) - held)
            room = self.settings.concurrency - len(self.driving)
            if room <= 0:
                return
            names, driving = list(self.flows), list(self.driving)
            for record in await self.runs.claim(
                self.owner, self.settings.lease, names, room, driving
            ):
                task = asyncio.create_task(self._drive(record), name=f"flow {record.id}")
                self.driving[record.id], self._records[record.id] = task, record
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("flows cannot reach the database (%s); retrying", exc)
        except Exception:
            log.exception("flows could not look for due runs; retrying")

    def lost(self, run: str) -> bool:
        """Whether this engine drives `run` still, though its lease passed to another."""
        record = self._records.get(run)
        return record is not None and record.lost

    def _lose(self, runs: set[str]) -> None:
        """Runs whose lease passed to another process (this one stalled past it): their
        drives take no new step, so that two drivers never go on side by side."""
        for run in runs:
            if (record := self._records.get(run)) is not None:
                record.lost = True

    def expire_finished_runs_now_and_then(self) -> None:
        """In the background, delete finished runs past their retention with their steps:
        every process hosting flows keeps the tables bounded, at most one sweep per interval."""
        retention = self.settings.run_retention
        if retention > 0 and self._run_sweeps.due():
            self._sweep = asyncio.create_task(self._expire(retention), name="flows expiry")

    async def _expire(self, retention: float) -> None:
        try:
            deleted = await self.runs.expire_finished_runs(retention)
        except Exception as exc:
            log.warning("flows could not expire finished runs (%s); retrying later", exc)
            return
        if deleted:
            log.info("deleted %d flow runs finished over %gs ago", deleted, retention)

    async def _drive(self, record: RunRecord) -> None:
        try:
            journal = await Journal.load(self.pool, record.id)
            flow = self.flows[record.flow]
            drive = Drive(flow, record, journal, self.runs, self.sender, self.settings)
            await self._record(record, await drive.outcome())
        except SteppedDown:
            log.warning("flow run %s: its lease passed to another process; stepped down", record.id)
        except Exception as exc:
            log.exception("flow run %s failed; it will be retried", record.id)
            with contextlib.suppress(Exception):
                await self.runs.note_error(
                    record.id,
                    self.owner,
                    repr(exc),
                    self.settings.retry_initial_delay,
                    self.settings.retry_max_delay,
                )
        finally:
            self.driving.pop(record.id, None)
            self._records.pop(record.id, None)

    async def _record(self, record: RunRecord, outcome: Finished | Suspended) -> None:
        if isinstance(outcome, Finished):
            await self.runs.finish(record.id, outcome.status)
            crashpoints.reached("finished", record.id)
            return
        await self.runs.suspend(record.id, self.owner, outcome.wake_at)
        if outcome.wake_at <= datetime.now(UTC):
            self.wake()

    async def _stop(self) -> None:
        """Abandon the runs in hand and hand them over at once (their steps are recorded);
        stop a sweep under way (each of its batches commits alone)."""
        ids, tasks = list(self.driving), list(self.driving.values())
        if self._sweep is not None:
            tasks.append(self._sweep)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.runs.release(self.owner, ids)
