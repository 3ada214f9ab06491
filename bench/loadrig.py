"""The programs of the load benchmark, each run in its own process as users run theirs.

Banyan: `faststream run discovery:app`, `faststream run examples.orders:app` and
`uvicorn gateway:app`, as users run them.

Hand-written: `uvicorn bench.loadrig:bare_gateway` (bench.gateway's BareGateway, connected on
start-up) and `python -m bench.loadrig` (bench.baseline's BaselineOrders on its own tables).
"""

import asyncio
import signal
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from starlette.types import Receive, Scope, Send

from bench.baseline import RawRpcClient, baseline_orders, create_pool
from bench.foundation import BASELINE_QUEUE
from bench.gateway import KEEP_ALIVE, BareGateway
from bench.proccpu import cpu_seconds
from pipelines import eventloop
from pipelines.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STOP_WAIT = 20.0  # seconds a program may take to finish in-flight work after SIGTERM


def baseline_schema(settings: Settings) -> str:
    return f"{settings.database_schema}_baseline"


# --- the hand-written programs ------------------------------------------------------------------


class BareApp:
    """BareGateway as an ASGI program: it connects to RabbitMQ and Redis on start-up."""

    def __init__(self) -> None:
        self.gateway: BareGateway | None = None
        self._resources = AsyncExitStack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.gateway is not None:
            await self.gateway(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.gateway = await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._resources.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> BareGateway:
        settings = Settings()
        rpc = RawRpcClient()
        self._resources.push_async_callback(rpc.close)
        await rpc.connect(settings.rabbitmq_url)
        redis = aioredis.from_url(settings.redis_url)
        self._resources.push_async_callback(redis.aclose)
        return BareGateway(rpc, redis, settings.jwt_secret, settings.cache_prefix)


bare_gateway = BareApp()


async def serve_bare_orders() -> None:
    """BaselineOrders until SIGTERM or SIGINT, then finish in-flight messages."""
    settings = Settings()
    pool = await create_pool(
        settings.database_url, baseline_schema(settings), settings.database_pool_size
    )
    orders = baseline_orders(settings, pool, BASELINE_QUEUE)
    await orders.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await orders.stop()
    await pool.close()


# --- running programs ---------------------------------------------------------------------------


@dataclass
class Program:
    """A child process of the benchmark, its output kept in a log file."""

    name: str
    process: "subprocess.Popen[bytes]"
    log: Path

    def check(self) -> None:
        """Raise, with the end of its log, if the program has exited."""
        code = self.process.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {code}; its log ends:\n{tail}")

    def rss_mb(self) -> float:
        """Resident memory, from /proc (VmRSS, in kB)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def cpu_seconds(self) -> float:
        """User and system CPU time so far."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Program:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
    return Program(name, process, log)


def uvicorn_argv(app: str, port: int) -> list[str]:
    """The same server options for both gateways."""
    return [
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--timeout-keep-alive",
        str(KEEP_ALIVE),
    ]


def faststream_argv(app: str) -> list[str]:
    return ["-m", "faststream", "run", app]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


if __name__ == "__main__":
    eventloop.run(serve_bare_orders())  # the loop Banyan's processes run on
