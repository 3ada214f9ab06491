"""Finished flow runs expire after FLOWS_RUN_RETENTION with their steps; recent finished runs
and unfinished runs of any age stay."""

import asyncio
import uuid

import pytest

import flows
from flows import Flow, Run
from flows.runs import RunTable, Status, run_id
from pipelines import Event, Service
from pipelines.cli import parser
from pipelines.database import Pool, migrate
from pipelines.settings import Settings, get_settings
from tests.conftest import eventually, started

HOUR = 3600.0
DAY = 24 * HOUR
ELSEWHERE = "hosted-elsewhere"  # a flow no engine here drives: its runs change only by sweeps


class RetentionProbed(Event, service="retention"):
    probe_id: str


probing = Flow("retention-probe", starts_with=RetentionProbed, key=lambda e: e.probe_id)


@probing.steps
async def nothing_to_do(probed: RetentionProbed, run: Run) -> None:
    pass


sweeper = Service("sweeper", migrations=flows.MIGRATIONS)
flows.host(sweeper, probing)


@pytest.fixture
async def runs(settings: Settings, orders) -> RunTable:
    await migrate(settings, [flows.MIGRATIONS])
    return RunTable(orders.runtime.pool)


async def recorded(
    pool: Pool, status: Status, finished_ago: float | None, started_ago: float
) -> str:
    """The id of a new run with one step; finished `finished_ago` seconds ago (None: not yet)."""
    key = uuid.uuid4().hex
    run = run_id(ELSEWHERE, key)
    await pool.execute(
        "INSERT INTO flow_runs (id, flow, key, status, input, wake_at, started_at, finished_at) "
        "VALUES ($1, $2, $3, $4, '{}', CASE WHEN $6::float8 IS NULL THEN now() + interval '1h' "
        "END, now() - make_interval(secs => $5), now() - make_interval(secs => $6))",
        run, ELSEWHERE, key, status, started_ago, finished_ago,
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO flow_steps (run_id, phase, step, service, queue, message_type, message, "
        "message_id) VALUES ($1, 'do', 'Probe', 'nowhere', 'nowhere', 'Probe', '{}', $1)",
        run,
    )
    return run


async def finished(pool: Pool, age: float, status: Status = "completed") -> str:
    return await recorded(pool, status, age, age + 60)


async def unfinished(pool: Pool, age: float, status: Status = "running") -> str:
    return await recorded(pool, status, None, age)


async def kept(pool: Pool, ids: list[str]) -> set[str]:
    rows = await pool.fetch("SELECT id FROM flow_runs WHERE id = ANY($1::text[])", ids)
    return {row["id"] for row in rows}


async def with_steps(pool: Pool, ids: list[str]) -> set[str]:
    rows = await pool.fetch("SELECT run_id FROM flow_steps WHERE run_id = ANY($1::text[])", ids)
    return {row["run_id"] for row in rows}


ENDED: tuple[Status, ...] = ("completed", "compensated", "failed")


async def test_old_finished_runs_go_with_their_steps_and_the_rest_stay(runs: RunTable) -> None:
    pool = runs.pool
    old = [await finished(pool, 2 * DAY + i, status) for i, status in enumerate(ENDED)]
    fresh = [await finished(pool, HOUR), await finished(pool, DAY - 60, "compensated")]
    going = [await unfinished(pool, 30 * DAY), await unfinished(pool, 30 * DAY, "compensating")]
    assert await runs.expire_finished_runs(DAY, batch=2) == len(old)
    everything = old + fresh + going
    assert await kept(pool, everything) == set(fresh + going)
    assert await with_steps(pool, everything) == set(fresh + going)


async def test_a_sweep_is_bounded_and_takes_the_oldest_first(runs: RunTable) -> None:
    old = [await finished(runs.pool, 2 * DAY + i) for i in range(5)]
    assert await runs.expire_finished_runs(DAY, batch=2, batches=2) == 4
    assert await kept(runs.pool, old) == {old[0]}  # the youngest of them
    assert await runs.expire_finished_runs(DAY, batch=2, batches=2) == 1  # the next sweep


async def test_a_sweep_skips_the_runs_another_sweep_holds(runs: RunTable) -> None:
    held, free = await finished(runs.pool, 2 * DAY), await finished(runs.pool, 2 * DAY + 1)
    async with runs.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM flow_runs WHERE id = $1 FOR UPDATE", held)
        assert await asyncio.wait_for(runs.expire_finished_runs(DAY), 5) == 1  # no waiting
        assert await kept(runs.pool, [held, free]) == {held}
    assert await runs.expire_finished_runs(DAY) == 1


async def test_the_engine_sweeps_finished_runs_on_its_own(
    settings: Settings, runs: RunTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = runs.pool
    old, fresh = await finished(pool, 2 * DAY, "failed"), await finished(pool, DAY - 60)
    going = await unfinished(pool, 30 * DAY)
    monkeypatch.setenv("FLOWS_RUN_RETENTION", str(DAY))
    instance = await started(sweeper, settings)
    try:
        await eventually(lambda: gone(pool, old), what="the engine to sweep the old run")
    finally:
        await instance.stop()
    assert await kept(pool, [old, fresh, going]) == {fresh, going}
    assert await with_steps(pool, [old, fresh, going]) == {fresh, going}


async def gone(pool: Pool, run: str) -> bool:
    return not await kept(pool, [run])


async def test_banyan_flows_expire(runs: RunTable, capsys: pytest.CaptureFixture[str]) -> None:
    old, fresh = await finished(runs.pool, 2 * DAY), await finished(runs.pool, HOUR)
    assert await cli("flows", "expire", "--older-than", str(DAY)) == 0
    assert "flow runs finished over 86400s ago" in capsys.readouterr().out
    assert await kept(runs.pool, [old, fresh]) == {fresh}


async def test_banyan_flows_expire_keeps_runs_forever_without_retention(
    runs: RunTable, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await finished(runs.pool, 2 * DAY)
    monkeypatch.setenv("FLOWS_RUN_RETENTION", "0")
    assert await cli("flows", "expire") == 0
    assert "kept forever" in capsys.readouterr().out
    assert await kept(runs.pool, [old]) == {old}
    await runs.expire_finished_runs(DAY)  # no old runs left for the counts of other tests


async def cli(*argv: str) -> int:
    args = parser().parse_args(argv)
    return int(await args.run(get_settings(), args))
