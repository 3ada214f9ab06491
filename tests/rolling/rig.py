"""The rolling-deploy drill's platform: discovery and releases of the library service as
processes, a gateway in this process that follows discovery, and a few clients."""

import asyncio
import contextlib
import os
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.app import create_app
from pipelines import Caller
from pipelines.database import connect
from pipelines.identity import TokenCodec
from pipelines.settings import Settings
from pipelines.testing.isolation import create_isolated_env, drop_isolated_env
from tests.drill_rig import Child, error_code, queue_depths
from tests.gateway_rig import serving
from tests.tcp_proxy import free_port

RELEASES = {"1.0.0": "library_v1", "1.1.0": "library_v2", "1.2.0": "library_v3"}
BORROW = "/api/library/borrow-book"
GET_BOOK = "/api/library/get-book"
CLIENTS = 6
BOOKS_PER_CLIENT = 3  # each client's own: no two requests race on one book
PAUSE = 0.1  # seconds between one client's rounds (a borrow and a read): about 30 requests/s


def release_module(version: str) -> str:
    return f"tests.rolling.{RELEASES[version]}"


class Platform:
    """Its own virtual host, schema and cache prefix; discovery; any release of the library."""

    def __init__(self, base: Settings) -> None:
        self.env = create_isolated_env()
        self.discovery_port = free_port()
        self.settings = base.model_copy(
            update={
                "rabbitmq_url": self.env["RABBITMQ_URL"],
                "database_schema": self.env["DATABASE_SCHEMA"],
                "cache_prefix": f"banyan-rolling-{self.env['BANYAN_TEST_RUN']}",
                "command_timeout": 10.0,
                "rate_limit_per_user": 1_000_000,
            }
        )
        self.discovery = self.child("discovery", "discovery:app", "discovery")
        self.releases: dict[str, Child] = {}
        self.ports: dict[str, int] = {}
        self.app = create_app(self.settings)  # the registry as discovery holds it
        self._gateway = contextlib.AsyncExitStack()

    def child(self, name: str, app: str, modules: str, **env: str) -> Child:
        return Child(
            name, [sys.executable, "-m", "faststream", "run", app], self.environ(modules, **env)
        )

    def environ(self, modules: str, **env: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "CACHE_PREFIX": self.settings.cache_prefix,
            "SERVICE_MODULES": modules,
            "ANNOUNCE_ENABLED": "true",
            "HEARTBEAT_INTERVAL": "1",
            "DISCOVERY_PORT": str(self.discovery_port),
            **env,
        }

    def release(self, version: str) -> Child:
        """The library at `version`, as its own process serving `/health` on its own port."""
        self.ports[version] = port = free_port()
        module = release_module(version)
        child = self.child(f"library {version}", f"{module}:app", module, LIBRARY_PORT=str(port))
        self.releases[version] = child
        return child

    async def start(self) -> None:
        await self.discovery.start(ready="registered discovery")
        self.http = await self._gateway.enter_async_context(serving(self.app))

    async def close(self) -> None:
        await self._gateway.aclose()
        await asyncio.gather(*(c.stop() for c in self.releases.values()))
        await self.discovery.stop()
        await drop_isolated_env(self.env, self.settings.cache_prefix)

    async def cli(self, version: str, *args: str, status: int = 0) -> str:
        """`banyan ARGS` as an operator of the library at `version` runs it; it must exit
        with `status`."""
        environ = self.environ(release_module(version), LIBRARY_PORT=str(self.ports[version]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipelines.cli", *args, env=environ,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
        assert process.returncode == status, (
            f"banyan {' '.join(args)}: {process.returncode}\n{output}"
        )
        return output

    async def get(self, version: str, path: str) -> httpx.Response:
        """GET `path` of the library process at `version` (its `/health`, its `/metrics`)."""
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(f"http://127.0.0.1:{self.ports[version]}{path}")

    async def handled(self, version: str) -> Counter[str]:
        """Messages the process at `version` handled, by message type (from its `/metrics`)."""
        counts: Counter[str] = Counter()
        for line in (await self.get(version, "/metrics")).text.splitlines():
            if line.startswith("banyan_handler_seconds_count{") and 'service="library"' in line:
                message_type = line.split('message_type="', 1)[1].split('"', 1)[0]
                counts[message_type] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    async def registry(self, service: str) -> dict[str, Any]:
        """What discovery's HTTP API says of `service`."""
        reader = Caller("registry-reader", permissions=frozenset({"discovery:read"}))
        headers = {"Authorization": f"Bearer {TokenCodec(self.settings).issue(reader)}"}
        async with httpx.AsyncClient(timeout=5, headers=headers) as client:
            answer = await client.get(
                f"http://127.0.0.1:{self.discovery_port}/api/services/{service}"
            )
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        conn = await connect(self.settings)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def queues(self) -> dict[str, int]:
        """Every queue of the platform's virtual host and the messages it holds (ready or not)."""
        depths = await queue_depths(self.env["BANYAN_TEST_VHOST"])
        return {name: ready + unacked for name, (ready, unacked) in depths.items()}

    def tail(self) -> str:
        children = [self.discovery, *self.releases.values()]
        return "\n".join(child.tail() for child in children)


@dataclass
class Tally:
    """What the clients were told, and what they expected to be told."""

    answered: Counter[str] = field(default_factory=Counter)  # "borrow", "borrow+note", "read"
    errors: list[str] = field(default_factory=list)


class Reader:
    """A library member's client: borrows their own books, with a note every other time, and
    reads each back at the position of the borrow (read-your-writes); every answer must be a
    2xx showing the book's loans so far, whichever release handled it."""

    def __init__(self, http: httpx.AsyncClient, token: str, name: str, tally: Tally) -> None:
        self.http, self.name, self.tally = http, name, tally
        self.auth = {"Authorization": f"Bearer {token}"}
        self.loans = {f"{name}-book-{n}": 0 for n in range(BOOKS_PER_CLIENT)}

    async def run(self, stopping: asyncio.Event) -> None:
        rounds = 0
        while not stopping.is_set():
            book = f"{self.name}-book-{rounds % BOOKS_PER_CLIENT}"
            position = await self.borrow(book, note=rounds % 2 == 1)
            if position is not None:
                await self.read(book, position)
            rounds += 1
            await asyncio.sleep(PAUSE)

    async def borrow(self, book: str, note: bool) -> str | None:
        body = {"bookId": book, "member": self.name, **({"note": "mind the map"} if note else {})}
        answer = await self.ask("POST", BORROW, json=body)
        if answer is None:
            return None
        self.loans[book] += 1
        expected = {"bookId": book, "timesBorrowed": self.loans[book]}
        if answer.json() != expected or "X-Event-Position" not in answer.headers:
            self.wrong(answer, f"borrow of {book}: expected {expected}")
            return None
        self.tally.answered["borrow+note" if note else "borrow"] += 1
        return answer.headers["X-Event-Position"]

    async def read(self, book: str, position: str) -> None:
        answer = await self.ask(
            "GET", GET_BOOK, params={"bookId": book}, headers={"X-Min-Position": position}
        )
        if answer is None:
            return
        expected = {"bookId": book, "member": self.name, "timesBorrowed": self.loans[book]}
        if answer.json() != expected:
            self.wrong(answer, f"read of {book} at {position}: expected {expected}")
            return
        self.tally.answered["read"] += 1

    async def ask(self, method: str, path: str, **options: Any) -> httpx.Response | None:
        correlation_id = uuid.uuid4().hex
        headers = {**self.auth, "X-Correlation-ID": correlation_id, **options.pop("headers", {})}
        try:
            answer = await self.http.request(method, path, headers=headers, **options)
        except httpx.HTTPError as exc:
            self.tally.errors.append(f"{method} {path}: {type(exc).__name__} {exc}")
            return None
        if answer.is_success:
            return answer
        code = error_code(answer, correlation_id)
        self.tally.errors.append(
            f"{method} {path}: {answer.status_code} {code} {answer.text[:300]}"
        )
        return None

    def wrong(self, answer: httpx.Response, what: str) -> None:
        self.tally.errors.append(f"{what}, got {answer.status_code} {answer.text[:300]}")
