"""`banyan up`: every platform process and the example services, for development."""

import asyncio
import contextlib
import importlib.util
import signal
import sys

from pipelines.database import migrate
from pipelines.http import proxy_arguments
from pipelines.settings import Settings

STOP_MARGIN = 10.0  # seconds a process may take to stop beyond its graceful shutdown
PROXY = "{proxy}"  # stands for uvicorn's arguments saying which proxies to believe
# (name, module that must exist, command); a process whose module is absent is skipped.
# `{gateway_port}` and PROXY are filled in from the settings.
PROCESSES: list[tuple[str, str, list[str]]] = [
    ("auth", "auth", ["-m", "faststream", "run", "auth:app"]),
    ("discovery", "discovery", ["-m", "faststream", "run", "discovery:app"]),
    ("gateway", "gateway", ["-m", "uvicorn", "gateway:app", "--port", "{gateway_port}", PROXY]),
    ("orders", "examples.orders", ["-m", "faststream", "run", "examples.orders:app"]),
    ("inventory", "examples.inventory", ["-m", "faststream", "run", "examples.inventory:app"]),
    ("fulfilment", "examples.fulfilment", ["-m", "faststream", "run", "examples.fulfilment:app"]),
]


def available(settings: Settings) -> list[tuple[str, list[str]]]:
    return [
        (name, [sys.executable, *_filled(argv, settings)])
        for name, module, argv in PROCESSES
        if importlib.util.find_spec(module) is not None
    ]


def _filled(argv: list[str], settings: Settings) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if arg == PROXY:
            out += proxy_arguments(settings.forwarded_allow_ips)
        else:
            out.append(arg.format(gateway_port=settings.gateway_port))
    return out


async def _pipe(name: str, stream: asyncio.StreamReader) -> None:
    width = max(len(n) for n, _, _ in PROCESSES)
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{width}} | {line.decode(errors='replace')}")
        sys.stdout.flush()


async def up(settings: Settings) -> int:
    """Migrate, start every process, stop them all on Ctrl-C or when one of them exits."""
    await migrate(settings)
    children: dict[str, asyncio.subprocess.Process] = {}
    pipes = []
    for name, argv in available(settings):
        child = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert child.stdout is not None
        children[name] = child
        pipes.append(asyncio.create_task(_pipe(name, child.stdout)))
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
