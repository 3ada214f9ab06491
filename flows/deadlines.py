"""Flow runs stuck past a step's deadline: the step is still pending long after the engine
should have given up on it (no engine drives the run, or it keeps failing)."""

from typing import TYPE_CHECKING

import asyncpg

from flows.settings import FlowSettings
from pipelines.database import connect
from pipelines.settings import Settings
from pipelines.status_report import Section
from pipelines.telemetry import METRICS, every_interval

if TYPE_CHECKING:
    from pipelines.instance import ServiceInstance

PAST_DEADLINE = (
    "SELECT count(DISTINCT s.run_id) FROM flow_steps s JOIN flow_runs r ON r.id = s.run_id "
    "WHERE s.status = 'pending' AND r.finished_at IS NULL "
    "AND s.deadline_at < now() - make_interval(secs => $1)"
)


def grace(flows: FlowSettings) -> float:
    """Seconds past a deadline in which an engine, even one taking over a crashed one's lease,
    expires the step."""
    return flows.lease + flows.tick_interval


async def past_deadline(conn: asyncpg.Connection | asyncpg.Pool, flows: FlowSettings) -> int:
    return int(await conn.fetchval(PAST_DEADLINE, grace(flows)))


async def watch(instance: "ServiceInstance") -> None:
    """Keep `banyan_flows_past_deadline` of a service hosting flows up to date."""
    flows = FlowSettings()
    gauge = METRICS.flows_past_deadline.labels(instance.service.name)

    async def sample(instance: "ServiceInstance") -> None:
        if instance.runtime.pool is not None:
            gauge.set(await past_deadline(instance.runtime.pool, flows))

    await every_interval(sample)(instance)


async def status_sections(settings: Settings) -> list[Section]:
    """The flows part of `banyan status`: unhealthy while a run is stuck past a deadline."""
    conn = await connect(settings)
    try:
        stuck = await past_deadline(conn, FlowSettings())
    except asyncpg.UndefinedTableError:
        return [Section("Flows", ["no flow has run"])]
    finally:
        await conn.close()
    line = f"{stuck} run(s) past a step's deadline (banyan flows list --status running)"
    return [Section("Flows", [line], healthy=stuck == 0)]


STATUS_PART = ("Flows", status_sections)
