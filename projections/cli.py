"""`banyan projections list|status|rebuild NAME|skip NAME`."""

import argparse
import json

from pipelines.collector import REBUILD_YOUNG_OBJECTS, tune_collector
from pipelines.database import connect, create_pool, migrate
from pipelines.querycache import QueryCache
from pipelines.redisclient import connect_redis
from pipelines.settings import Settings
from projections import state
from projections.progress import Progress
from projections.rebuild import Rebuild
from projections.status import find, known_projections, statuses


async def list_projections(settings: Settings, args: argparse.Namespace) -> int:
    for name, projection in sorted(known_projections(settings).items()):
        print(f"{name:<24} {', '.join(projection.event_types)}")
    return 0


async def show_status(settings: Settings, args: argparse.Namespace) -> int:
    """Each projection's position, lag and state; exits 1 if one has stopped on a failure."""
    await migrate(settings)
    found = await statuses(settings, [args.name] if args.name else None)
    if args.json:
        print(json.dumps([s.to_json() for s in found]))
    else:
        for projection in found:
            print(projection.describe())
    return 0 if all(s.healthy for s in found) else 1


async def rebuild(settings: Settings, args: argparse.Namespace) -> int:
    projection = find(settings, args.name)
    await migrate(settings)
    pool = await create_pool(settings, size=2)
    cache = QueryCache(connect_redis(settings), settings.cache_prefix)
    progress = Progress(projection.name)
    tune_collector(REBUILD_YOUNG_OBJECTS)
    try:
        await Rebuild(projection, settings, pool, progress, cache.reset).run()
    except KeyboardInterrupt:
        progress.finish(f"interrupted; run `banyan projections rebuild {args.name}` to resume")
        return 130
    finally:
        await cache.close()
        await pool.close()
    return 0


async def skip(settings: Settings, args: argparse.Namespace) -> int:
    find(settings, args.name)
    conn = await connect(settings)
    try:
        position = await state.skip(conn, args.name)
    finally:
        await conn.close()
    print(f"{args.name}: skipped the event at position {position} for good (rebuilds skip it too)")
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = groups.add_parser("projections", help="read models").add_subparsers(
        dest="action", required=True
    )
    actions.add_parser("list", help="declared projections").set_defaults(run=list_projections)
    show = actions.add_parser("status", help="position, lag and state")
    show.add_argument("name", nargs="?")
    show.add_argument("--json", action="store_true", help="one JSON document")
    show.set_defaults(run=show_status)
    for name, run, text in (
        ("rebuild", rebuild, "replay the log into fresh tables, then swap"),
        ("skip", skip, "move a failed projection past the event it failed on"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("name")
        action.set_defaults(run=run)
