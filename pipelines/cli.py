"""The `banyan` command line."""

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pipelines import deadletters, eventloop
from pipelines.plugins import COMMANDS, contributions
from pipelines.settings import Settings, get_settings

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


async def db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.database import migrate
    from pipelines.modules import migration_folders

    applied = await migrate(settings, migration_folders(settings))
    print(f"applied {', '.join(applied)}" if applied else "database is up to date")
    return 0


async def contracts_pull(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.contract_code import contracts_module
    from pipelines.registry import DISCOVERY, GetService, ServiceInfo
    from pipelines.rpc import RpcClient

    async with RpcClient(settings.rabbitmq_url, service_name="banyan-cli") as rpc:
        reply = await rpc.send(DISCOVERY, GetService(service_name=args.service), timeout=10)
    found = ServiceInfo.model_validate(reply.result())
    contracts = [contract for contract in found.contracts if not contract.internal]
    code = contracts_module(found.name, found.version, contracts)
    if args.out is None:
        print(code, end="")
    else:
        await asyncio.to_thread(Path(args.out).write_text, code)
        print(f"wrote {len(contracts)} contracts of {found.name} {found.version} to {args.out}")
    return 0


async def service_credential(settings: Settings, args: argparse.Namespace) -> int:
    """Print the credential a service trades with auth for its tokens (RS256), granting the
    permissions its `calls=` require: run where JWT_PRIVATE_KEY is, keep the output secret."""
    from pipelines.identity import TokenCodec
    from pipelines.modules import load_services

    found = {service.name: service for service in load_services(settings)}
    if args.service not in found:
        raise LookupError(f"{args.service} is not among SERVICE_MODULES ({', '.join(found)})")
    codec = TokenCodec(settings)
    if not codec.can_sign:
        raise PermissionError("JWT_PRIVATE_KEY is needed to sign a service credential")
    calls = found[args.service].calls
    print(codec.issue_credential(args.service, calls.permissions, args.days))
    return 0


async def dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    queues = deadletters.dead_letter_queues(settings)
    if not queues:
        print("no dead-letter queues")
    for queue in queues:
        print(f"{queue.messages:>8}  {queue.name}")
    return 0


async def dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    moved = await deadletters.replay(settings, args.queue)
    print(f"re-drove {moved} message(s) to {deadletters.original_queue(args.queue)}")
    return 0


async def relay(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.standalone import run_relay

    await run_relay(settings)
    return 0


async def status(settings: Settings, args: argparse.Namespace) -> int:
    """The report; exits 1 when any part is unhealthy (or cannot be read)."""
    from pipelines.status_report import as_json, healthy, render, sections

    found = await sections(settings)
    print(as_json(found) if args.json else render(found))
    return 0 if healthy(found) else 1


async def up(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.devserver import up as run_up

    return await run_up(settings, raw=args.raw)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="banyan", description="Banyan platform tools")
    root.add_argument(
        "--app",
        metavar="MODULE[:app],...",
        help="the service module(s) to act on (default: SERVICE_MODULES); "
        "modules are found from the working directory too",
    )
    groups = root.add_subparsers(dest="group", required=True)

    db = groups.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(run=db_migrate)

    contracts = groups.add_parser("contracts", help="other services' contracts")
    pull = contracts.add_subparsers(dest="action", required=True).add_parser(
        "pull", help="write Python classes of a service's contracts, from the registry"
    )
    pull.add_argument("service", help="the service whose contracts to write")
    pull.add_argument("--out", help="the module file to write (default: standard output)")
    pull.set_defaults(run=contracts_pull)

    services = groups.add_parser("services", help="service identities")
    credential = services.add_subparsers(dest="action", required=True).add_parser(
        "credential", help="print a service's SERVICE_CREDENTIAL for its calls= (RS256)"
    )
    credential.add_argument("service", help="a service of SERVICE_MODULES")
    credential.add_argument("--days", type=int, default=90, help="valid for (default 90)")
    credential.set_defaults(run=service_credential)

    dlq = groups.add_parser("dlq", help="dead-letter queues")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    dlq_actions.add_parser("list", help="dead-letter queues and their sizes").set_defaults(
        run=dlq_list
    )
    replay = dlq_actions.add_parser("replay", help="re-drive a dead-letter queue")
    replay.add_argument("queue", help="the original queue (or its dlq.* name)")
    replay.set_defaults(run=dlq_replay)

    for add_commands in contributions(COMMANDS):
        add_commands(groups)
    groups.add_parser("relay", help="run the event relay alone").set_defaults(run=relay)
    run_up = groups.add_parser("up", help="run every platform process (development)")
    run_up.add_argument(
        "--raw",
        action="store_true",
        help="print each process's JSON lines as they are, without the `name | ` prefix",
    )
    run_up.set_defaults(run=up)
    report = groups.add_parser("status", help="services, health, queues, lag, projections")
    report.add_argument("--json", action="store_true", help="one JSON document")
    report.set_defaults(run=status)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own service modules, as `faststream run`
    if args.app:
        modules = ",".join(m.partition(":")[0] for m in args.app.split(","))
        settings = settings.model_copy(update={"service_modules": modules})
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = eventloop.run(args.run(settings, args))
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear message, not a traceback, for expected failures
        print(f"banyan: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
