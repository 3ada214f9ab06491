"""What `banyan flows list|show` print: runs, and the history of one run step by step."""

import json
from datetime import datetime
from typing import Any

import asyncpg

from flows.journal import StepRecord, steps_of

RUN_LIST = (
    "SELECT r.id, r.status, r.reason, r.last_error, r.started_at, "
    "count(s.seq) AS steps FROM flow_runs r LEFT JOIN flow_steps s ON s.run_id = r.id "
    "WHERE ($1::text IS NULL OR r.flow = $1) AND ($2::text IS NULL OR r.status = $2) "
    "GROUP BY r.id ORDER BY r.started_at DESC, r.id LIMIT $3"
)


async def run_list(
    conn: asyncpg.Connection, flow: str | None, status: str | None, limit: int
) -> list[str]:
    rows = await conn.fetch(RUN_LIST, flow, status, limit)
    if not rows:
        return ["no flow runs"]
    width = max(len(r["id"]) for r in rows)
    lines = [f"{'RUN':<{width}}  {'STATUS':<12} {'STEPS':>5}  {'STARTED':<19}  REASON"]
    for r in rows:
        note = r["reason"] or (f"error: {r['last_error']}" if r["last_error"] else "")
        lines.append(
            f"{r['id']:<{width}}  {r['status']:<12} {r['steps']:>5}  "
            f"{_clock(r['started_at'])}  {_short(note, 80)}"
        )
    return lines


async def run_history(conn: asyncpg.Connection, run_or_key: str) -> list[str]:
    """Every run whose id or key is `run_or_key`, each with its steps; [] if none."""
    runs = await conn.fetch(
        "SELECT * FROM flow_runs WHERE id = $1 OR key = $1 ORDER BY started_at", run_or_key
    )
    lines: list[str] = []
    for run in runs:
        lines += [*_header(run), "", *_steps(run["started_at"], await steps_of(conn, run["id"]))]
    return lines


def _header(run: asyncpg.Record) -> list[str]:
    fields: list[tuple[str, Any]] = [
        ("reason", run["reason"]),
        ("started", _clock(run["started_at"])),
        ("finished", _clock(run["finished_at"]) if run["finished_at"] else None),
        ("due", _clock(run["wake_at"]) if run["wake_at"] else None),
        ("driven by", f"{run['lease_owner']} until {_clock(run['lease_until'])}"
                      if run["lease_owner"] else None),
        ("errors", f"{run['errors']}, last: {run['last_error']}" if run["errors"] else None),
        ("correlation", run["correlation_id"]),
        ("started by", f"event {run['causation_id']}"),
        ("input", json.dumps(run["input"], sort_keys=True)),
    ]  # fmt: skip
    return [f"{run['id']}  {run['status']}"] + [
        f"  {name:<12} {value}" for name, value in fields if value is not None
    ]


def _steps(started: datetime, steps: list[StepRecord]) -> list[str]:
    if not steps:
        return ["  no steps yet"]
    width = max(len(s.step) for s in steps)
    lines = [
        f"  {'#':>3}  {'PHASE':<8} {'STEP':<{width}}  {'SENDS':<32} {'STATUS':<8} TRIES  AFTER"
    ]
    for number, s in enumerate(steps, 1):
        sends = f"{s.outgoing.service} {s.outgoing.message_type}"
        after = ((s.answered_at or s.begun_at) - started).total_seconds()
        lines.append(
            f"  {number:>3}  {s.phase:<8} {s.step:<{width}}  {sends:<32} {s.status:<8} "
            f"{s.attempts:>5}  +{after:.3f}s"
        )
        lines += [f"{'':>7}{name:<8}{text}" for name, text in _details(s)]
    return lines


def _details(step: StepRecord) -> list[tuple[str, str]]:
    """What the step sent and as whom, and its answer (or what it waits for)."""
    details = [("sent", json.dumps(step.outgoing.body, sort_keys=True))]
    if step.acting_as:
        details.append(("as", step.acting_as))
    if step.reason:
        details.append(("reason", step.reason))
    elif step.settled:
        details.append(("answer", json.dumps(step.result, sort_keys=True)))
    else:
        due = f"by {_clock(step.deadline_at)}" if step.deadline_at else "no deadline"
        details.append(("waiting", due))
    if step.last_error and not step.settled:
        details.append(("error", step.last_error))
    return details


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
