"""`banyan flows list|show ID|expire`: the runs of the process managers, their step histories,
and the deletion of finished runs past their retention."""

import argparse

from flows.host import MIGRATIONS
from flows.report import run_history, run_list
from flows.runs import RunTable
from flows.settings import FlowSettings
from pipelines.database import connect, migrate
from pipelines.settings import Settings


async def list_runs(settings: Settings, args: argparse.Namespace) -> int:
    await migrate(settings, [MIGRATIONS])
    conn = await connect(settings)
    try:
        print("\n".join(await run_list(conn, args.flow, args.status, args.limit)))
    finally:
        await conn.close()
    return 0


async def show_run(settings: Settings, args: argparse.Namespace) -> int:
    await migrate(settings, [MIGRATIONS])
    conn = await connect(settings)
    try:
        lines = await run_history(conn, args.id)
    finally:
        await conn.close()
    if not lines:
        print(f"no flow run with id or key {args.id!r}")
        return 1
    print("\n".join(lines))
    return 0


async def expire_runs(settings: Settings, args: argparse.Namespace) -> int:
    older_than = FlowSettings().run_retention if args.older_than is None else args.older_than
    if args.older_than is None and older_than <= 0:
        print("FLOWS_RUN_RETENTION is 0: finished runs are kept forever")
        return 0
    await migrate(settings, [MIGRATIONS])
    conn = await connect(settings)
    deleted = 0
    try:
        while swept := await RunTable(conn).expire_finished_runs(older_than):
            deleted += swept
    finally:
        await conn.close()
    print(f"deleted {deleted} flow runs finished over {older_than:g}s ago, and their steps")
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = groups.add_parser("flows", help="process managers").add_subparsers(
        dest="action", required=True
    )
    listing = actions.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--flow", help="only the runs of this flow")
    listing.add_argument("--status", help="running, compensating, completed, compensated, failed")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=list_runs)
    show = actions.add_parser("show", help="a run and its steps")
    show.add_argument("id", help="a run id ('{flow}:{key}') or a key, e.g. an order id")
    show.set_defaults(run=show_run)
    expire = actions.add_parser("expire", help="delete finished runs past their retention")
    expire.add_argument(
        "--older-than", type=float, metavar="SECONDS", help="default: FLOWS_RUN_RETENTION"
    )
    expire.set_defaults(run=expire_runs)
