"""`banyan up`: every service of SERVICE_MODULES and the gateway, for development."""

import asyncio
import contextlib
import logging
import os
import signal
import sys

from pipelines.database import migrate
from pipelines.logs import JsonFormatter
from pipelines.modules import metrics_ports, module_names
from pipelines.plugins import PROCESSES, contributions
from pipelines.settings import Settings

STOP_MARGIN = 10.0  # seconds a process may take to stop beyond its graceful shutdown
SELF = "up"  # the name `banyan up`'s own lines go by


Process = tuple[str, list[str], dict[str, str]]  # name, command, environment


def available(settings: Settings) -> list[Process]:
    """(name, command, environment) of each process: every service of SERVICE_MODULES (each
    with its own METRICS_PORT), then the front processes the installed packages contribute
    (the gateway)."""
    ports = metrics_ports(settings)
    services = [
        (
            module.rsplit(".", 1)[-1],
            [sys.executable, "-m", "faststream", "run", f"{module}:app"],
            {"METRICS_PORT": str(ports[module])} if module in ports else {},
        )
        for module in module_names(settings)
    ]
    fronts = [process(settings) for process in contributions(PROCESSES)]
    return [*services, *((name, [sys.executable, *argv], {}) for name, argv in fronts)]


class Output(logging.Handler):
    """Where the processes' lines go: each after its process's `name | ` for people, or
    as they are (one JSON object a line) for log shippers (`--raw`). `banyan up`'s own log
    lines are JSON too, under the name `up`."""

    def __init__(self, names: list[str], raw: bool) -> None:
        super().__init__()
        self.width = max(len(name) for name in [*names, SELF])
        self.raw = raw
        self.setFormatter(JsonFormatter())

    def line(self, name: str, line: str) -> None:
        sys.stdout.write(line if self.raw else f"{name:<{self.width}} | {line}")
        sys.stdout.flush()

    def emit(self, record: logging.LogRecord) -> None:
        record.service = SELF
        self.line(SELF, self.format(record) + "\n")

    def say(self, message: str, level: int = logging.INFO) -> None:
        self.handle(logging.makeLogRecord({"name": "banyan.up", "msg": message, "levelno": level,
                                           "levelname": logging.getLevelName(level)}))  # fmt: skip

    async def pipe(self, name: str, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.line(name, line.decode(errors="replace"))


async def up(settings: Settings, raw: bool = False) -> int:
    """Migrate, start every process, stop them all on Ctrl-C or when one of them exits."""
    processes = available(settings)
    out = Output([name for name, _, _ in processes], raw)
    logging.getLogger().handlers[:] = [out]
    await migrate(settings)
    children: dict[str, asyncio.subprocess.Process] = {}
    pipes = []
    for name, argv, env in processes:
        child = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert child.stdout is not None
        children[name] = child
        pipes.append(asyncio.create_task(out.pipe(name, child.stdout)))
        out.say(f"started {name} (pid {child.pid}): {' '.join(argv[1:])}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exits = [asyncio.create_task(child.wait()) for child in children.values()]
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    codes = await _stop_all(children, settings.graceful_timeout + STOP_MARGIN, out)
    await asyncio.gather(*pipes)
    return 0 if stop.is_set() else max(abs(c) for c in codes) or 1


async def _stop_all(
    children: dict[str, asyncio.subprocess.Process], timeout: float, out: Output
) -> list[int]:
    """SIGTERM to each; those still running after `timeout` seconds are killed, and named."""
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    waits = asyncio.gather(*(child.wait() for child in children.values()))
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(asyncio.shield(waits), timeout)
    for name, child in children.items():
        if child.returncode is None:
            stuck = f"{name} (pid {child.pid}) did not stop within {timeout:g} s: killed"
            out.say(stuck, logging.ERROR)
            with contextlib.suppress(ProcessLookupError):
                child.kill()
    return await waits
