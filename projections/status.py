"""What `banyan projections list|status` show."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pipelines.database import connect
from pipelines.modules import load_services
from pipelines.settings import Settings
from pipelines.status_report import Section
from projections.projection import Projection

LAG_COUNT_LIMIT = 10_000_000


def known_projections(settings: Settings) -> dict[str, Projection]:
    """The projections declared by the services of `SERVICE_MODULES`."""
    return {p.name: p for service in load_services(settings) for p in service.projections}


def find(settings: Settings, name: str) -> Projection:
    projections = known_projections(settings)
    if name not in projections:
        known = ", ".join(sorted(projections)) or "none"
        raise LookupError(f"no projection named {name!r} (known: {known})")
    return projections[name]


@dataclass(frozen=True)
class Status:
    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    state: str
    generation: int
    updated_at: datetime | None
    error: str | None = None
    error_position: int | None = None
    rebuild_position: int | None = None
    rebuild_target: int | None = None
    skipped: tuple[int, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.state != "failed"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "state": self.state, "healthy": self.healthy,
            "position": self.position, "head": self.head, "lagEvents": self.lag_events,
            "lagSeconds": round(self.lag_seconds, 3), "generation": self.generation,
            "error": self.error, "errorPosition": self.error_position,
            "skipped": list(self.skipped),
        }  # fmt: skip

    def describe(self) -> str:
        text = (
            f"{self.name:<24} {self.state:<10} position {self.position:,} of {self.head:,}  "
            f"lag {self.lag_events:,} events / {self.lag_seconds:.1f}s  gen {self.generation}"
        )
        if self.error:
            text += f"\n{'':<24} stopped at position {self.error_position}: {self.error}"
        if self.skipped:
            positions = ", ".join(f"{p:,}" for p in self.skipped)
            text += f"\n{'':<24} skipped by hand (rebuilds too): {positions}"
        if self.rebuild_target is not None:
            text += (
                f"\n{'':<24} rebuild at {self.rebuild_position:,} of {self.rebuild_target:,}"
                " (run rebuild again to resume)"
            )
        return text


async def status(conn: asyncpg.Connection, name: str) -> Status:
    row = await conn.fetchrow(
        "SELECT p.position, p.generation, p.state, p.error, p.error_position, p.updated_at, "
        "r.position AS rebuild_position, r.target AS rebuild_target, p.skipped "
        "FROM projection_positions p LEFT JOIN projection_rebuilds r USING (name) "
        "WHERE p.name = $1",
        name,
    )
    head = await conn.fetchval("SELECT readable_bound() - 1")
    if row is None:
        return Status(name, 0, head, head, 0.0, "never run", 0, None)
    lag = await conn.fetchrow(
        "SELECT count(*) AS events, coalesce(extract(epoch FROM now() - min(occurred_at)), 0) "
        "AS seconds FROM (SELECT occurred_at FROM events WHERE position > $1 "
        f"ORDER BY position LIMIT {LAG_COUNT_LIMIT}) pending",
        row["position"],
    )
    state = "rebuilding" if row["rebuild_target"] is not None else row["state"]
    return Status(
        name,
        row["position"],
        head,
        lag["events"],
        float(lag["seconds"]),
        state,
        row["generation"],
        row["updated_at"],
        row["error"],
        row["error_position"],
        row["rebuild_position"],
        row["rebuild_target"],
        tuple(row["skipped"]),
    )


async def statuses(settings: Settings, names: list[str] | None = None) -> list[Status]:
    """The status of each named projection (default: every one SERVICE_MODULES declares)."""
    conn = await connect(settings)
    try:
        return [await status(conn, name) for name in names or sorted(known_projections(settings))]
    finally:
        await conn.close()


async def status_sections(settings: Settings) -> list[Section]:
    """The projections part of `banyan status`: unhealthy if one has stopped on a failure."""
    try:
        found = await statuses(settings)
    except asyncpg.UndefinedTableError:
        lines = ["no projection has run: the database is not migrated (banyan db migrate)"]
        return [Section("Projections", lines)]
    lines = [s.describe() for s in found]
    return [Section("Projections", lines, healthy=all(s.healthy for s in found))]


STATUS_PART = ("Projections", status_sections)
