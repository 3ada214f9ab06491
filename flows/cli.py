"""`banyan flows list|show ID`: the runs of the process managers and their step histories."""

import argparse

from flows.host import MIGRATIONS
from flows.report import run_history, run_list
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
