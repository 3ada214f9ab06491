"""`banyan up`: every service of SERVICE_MODULES and the gateway, for development."""

import asyncio
import contextlib
import signal
import sys

from pipelines.database import migrate
from pipelines.modules import module_names
from pipelines.plugins import PROCESSES, contributions
from pipelines.settings import Settings

STOP_MARGIN = 10.0  # seconds a process may take to stop beyond its graceful shutdown


def available(settings: Settings) -> list[tuple[str, list[str]]]:
    """(name, command) of each process: every service of SERVICE_MODULES, then the front
    processes the installed packages contribute (the gateway)."""
    services = [
        (module.rsplit(".", 1)[-1], [sys.executable, "-m", "faststream", "run", f"{module}:app"])
        for module in module_names(settings)
    ]
    fronts = [process(settings) for process in contributions(PROCESSES)]
    return [*services, *((name, [sys.executable, *argv]) for name, argv in fronts)]


async def _pipe(name: str, width: int, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{width}} | {line.decode(errors='replace')}")
        sys.stdout.flush()


async def up(settings: Settings) -> int:
    """Migrate, start every process, stop them all on Ctrl-C or when one of them exits."""
    await migrate(settings)
    children: dict[str, asyncio.subprocess.Process] = {}
    pipes = []
    processes = available(settings)
    width = max(len(name) for name, _ in processes)
    for name, argv in processes:
        child = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert child.stdout is not None
        children[name] = child
        pipes.append(asyncio.create_task(_pipe(name, width, child.stdout)))
        print(f"started {name} (pid {child.pid}): {' '.join(argv[1:])}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exits = [asyncio.create_task(child.wait()) for child in children.values()]
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    codes = await _stop_all(children, settings.graceful_timeout + STOP_MARGIN)
    await asyncio.gather(*pipes)
    return 0 if stop.is_set() else max(abs(c) for c in codes) or 1


async def _stop_all(children: dict[str, asyncio.subprocess.Process], timeout: float) -> list[int]:
    """SIGTERM to each; those still running after `timeout` seconds are killed, and named."""
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    waits = asyncio.gather(*(child.wait() for child in children.values()))
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(asyncio.shield(waits), timeout)
    for name, child in children.items():
        if child.returncode is None:
            print(f"{name} (pid {child.pid}) did not stop within {timeout:g} s: killed", flush=True)
            with contextlib.suppress(ProcessLookupError):
                child.kill()
    return await waits
