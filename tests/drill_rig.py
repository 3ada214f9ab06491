"""The rig of the fault drills: platform processes as real subprocesses, a gateway, steady load.

The rig has its own RabbitMQ virtual host and PostgreSQL schema (not the test session's), so
services other test modules started in this process neither compete for its queues nor lead
its relay and projection runner: every consumer and leader is one of the rig's processes.
"""

import asyncio
import contextlib
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import httpx

from examples.orders import service as orders_service
from gateway.app import create_app
from gateway.registry import from_services
from pipelines import headers as h
from pipelines.database import connect
from pipelines.http import HttpServer
from pipelines.settings import Settings
from pipelines.testing.isolation import create_isolated_env, drop_isolated_env
from tests.conftest import eventually
from tests.folds import caught_up, folded_orders, projected_orders
from tests.tcp_proxy import proxy_for

COMMAND_TIMEOUT = 10.0  # the gateway's: a command unanswered by then gets 504 TIMEOUT
ANSWER_TIMEOUT = COMMAND_TIMEOUT + 5  # a client waiting longer than this saw a hang
CLIENTS = 4
PAUSE = 0.1  # seconds between one client's requests: a modest, steady rate
PLACE_ORDER = "/api/orders/place-order"
ITEMS = [{"sku": "drill", "quantity": 2, "unitPrice": "1.25"}]
ERROR_FIELDS = {"code", "message", "details", "correlationId"}
# what a client may be told while a part is down: try again later
TRANSIENT = {"SERVICE_UNAVAILABLE", "CIRCUIT_BREAKER_OPEN", "TIMEOUT"}
SERVICE_READY = "FastStream app started successfully"
RELAY_LEADS = "relay leading from position"
RUNNER_LEADS = "projection order_summary running from position"
LISTENER = "drills"  # tests/drill_listener.py: the subscriber every OrderPlaced must reach
APPEND_STALL_TIMEOUT = 2.0  # the rig's sessions: a frozen appender is cut within seconds


class Child:
    """A platform process run as its users run it; its output is kept for waits and failures."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._news = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, ready: str | None = SERVICE_READY, timeout: float = 45) -> None:
        """Start, and wait for the line saying it is ready (if there is one to wait for)."""
        since = len(self.lines)
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self._process.stdout is not None
        self._reader = asyncio.create_task(self._read(self._process.stdout))
        if ready is not None:
            await self.wait_for(ready, since, timeout)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._news.set()
        self._news.set()  # the process is gone: waiters must not wait for more

    async def wait_for(self, text: str, since: int = 0, timeout: float = 30) -> None:
        """Wait until the process writes a line containing `text` (after line `since`)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._news.clear()
                    if any(text in line for line in self.lines[since:]):
                        return
                    if self._reader is None or self._reader.done():
                        raise AssertionError(f"{self.name} exited\n{self.tail()}")
                    await self._news.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} wrote no {text!r} within {timeout}s\n{self.tail()}"
            ) from None

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing in flight is finished or acknowledged."""
        assert self._process is not None
        self._process.kill()
        await self._ended()

    async def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it takes too long."""
        if not self.running:
            return
        assert self._process is not None
        self._process.terminate()
        try:
            await asyncio.wait_for(self._process.wait(), 30)
        except TimeoutError:
            self._process.kill()
        await self._ended()

    async def restart(self, **env: str) -> None:
        """Stop gracefully and start again, with `env` added (a new release, say)."""
        await self.stop()
        self.env.update(env)
        await self.start()

    async def _ended(self) -> None:
        assert self._process is not None and self._reader is not None
        await self._process.wait()
        await self._reader

    def tail(self, count: int = 30) -> str:
        return "\n".join(f"  {self.name} | {line}" for line in self.lines[-count:])


@dataclass
class Ledger:
    """What the clients were told."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # correlation id -> order id
    refused: Counter[str] = field(default_factory=Counter)  # error code -> how many
    broken: list[str] = field(default_factory=list)  # hangs, transport errors, other bodies
    timings: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)

    def slowest(self, since: float, until: float) -> float:
        """The longest answer, in seconds, to a request sent between `since` and `until`
        (event loop times)."""
        return max(taken for sent, taken in self.timings if since <= sent <= until)


def error_code(response: httpx.Response, correlation_id: str) -> str | None:
    """The code of a body in the platform's one error shape, or None for anything else."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return None
    shaped = isinstance(error, dict) and set(error) == ERROR_FIELDS
    if not shaped or error["correlationId"] != correlation_id or "Traceback" in response.text:
        return None
    return str(error["code"])


class Load:
    """A few clients placing orders through the gateway, each answer recorded in a ledger."""

    def __init__(self, http: httpx.AsyncClient, token: str, customer: str) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {token}"}
        self.customer = customer
        self.ledger = Ledger()
        self._stopping = asyncio.Event()
        self._clients: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> "Load":
        self._clients = [asyncio.create_task(self._client()) for _ in range(CLIENTS)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        await asyncio.gather(*self._clients)  # each request in flight ends within its timeout

    async def _client(self) -> None:
        while not self._stopping.is_set():
            await self.place(self.customer)
            await asyncio.sleep(PAUSE)

    async def place(self, customer: str) -> str | None:
        """Place one order; its id if the gateway acknowledged it."""
        correlation_id = uuid.uuid4().hex
        body = {"customerId": customer, "items": ITEMS}
        headers = {**self.auth, "X-Correlation-ID": correlation_id}
        sent = asyncio.get_running_loop().time()
        try:
            response = await self.http.post(PLACE_ORDER, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.ledger.broken.append(f"{type(exc).__name__} {exc}")
            return None
        finally:
            self.ledger.timings.append((sent, asyncio.get_running_loop().time() - sent))
        if response.status_code == 200 and "X-Event-Position" in response.headers:
            order_id: str = response.json()["orderId"]
            self.ledger.acknowledged[correlation_id] = order_id
            return order_id
        if (code := error_code(response, correlation_id)) is not None:
            self.ledger.refused[code] += 1
        else:
            self.ledger.broken.append(f"{response.status_code} {response.text[:300]}")
        return None

    async def advances(self, orders: int, what: str, timeout: float = 60) -> None:
        """Wait until `orders` more orders are acknowledged."""
        target = len(self.ledger.acknowledged) + orders
        await eventually(
            lambda: len(self.ledger.acknowledged) >= target,
            timeout=timeout,
            what=f"{orders} more acknowledged orders {what} (refused so far: "
            f"{dict(self.ledger.refused)})",
        )


class Rig:
    """Orders and a listener service as subprocesses, a gateway in this process, a database;
    the gateway and the services reach Redis through a proxy a drill can freeze."""

    def __init__(self, base: Settings, token: Callable[..., str]) -> None:
        self.env = create_isolated_env()
        self.redis, self._redis_port, redis_url = proxy_for(base.redis_url)
        self.settings = base.model_copy(
            update={
                "rabbitmq_url": self.env["RABBITMQ_URL"],
                "database_schema": self.env["DATABASE_SCHEMA"],
                "cache_prefix": f"banyan-drill-{self.env['BANYAN_TEST_RUN']}",
                "command_timeout": COMMAND_TIMEOUT,
                "rate_limit_per_user": 1_000_000,
                "redis_url": redis_url,
                "append_stall_timeout": APPEND_STALL_TIMEOUT,
            }
        )
        self.token = token
        self.orders = self.child("orders", "-m", "faststream", "run", "examples.orders:app")
        self.listener = self.child(
            "listener", "-m", "faststream", "run", "tests.drill_listener:app",
            RELAY_ENABLED="false",
        )  # fmt: skip
        self.app = create_app(self.settings, from_services([orders_service]))
        self.server = HttpServer(self.app, "127.0.0.1", 0)
        self.http = httpx.AsyncClient(timeout=ANSWER_TIMEOUT)

    def child(self, name: str, *argv: str, **env: str) -> Child:
        settings = {
            "CACHE_PREFIX": self.settings.cache_prefix,
            "REDIS_URL": self.settings.redis_url,
            "APPEND_STALL_TIMEOUT": str(APPEND_STALL_TIMEOUT),
        }
        return Child(name, [sys.executable, *argv], {**os.environ, **self.env, **settings, **env})

    async def start(self) -> None:
        await self.redis.start(self._redis_port)
        await asyncio.gather(self.orders.start(ready=RUNNER_LEADS), self.listener.start())
        await self.app.state.gateway.start()
        await self.server.start()
        self.http.base_url = httpx.URL(f"http://127.0.0.1:{self.server.port}")

    async def close(self) -> None:
        await self.http.aclose()
        await self.server.stop()
        await self.app.state.gateway.stop()
        await asyncio.gather(self.orders.stop(), self.listener.stop())
        await self.redis.stop()
        await drop_isolated_env(self.env)

    def load(self, customer: str) -> Load:
        # orders:admin: the poison drill places an order in another customer's name
        return Load(self.http, self.token(customer, "orders:place", "orders:admin"), customer)

    async def cli(self, *args: str) -> str:
        """Run `banyan ARGS` against the rig; its output."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipelines.cli", *args, env=self.orders.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
        assert process.returncode == 0, f"banyan {' '.join(args)} failed:\n{output}"
        return output

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[asyncpg.Connection]:
        """A fresh connection each time: a pool would hold connections a restart broke."""
        conn = await connect(self.settings)
        try:
            yield conn
        finally:
            await conn.close()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.database() as conn:
            return await conn.fetchval(sql, *args)

    async def unhandled_events(self) -> int:
        """OrderPlaced events in the log that the listener has not handled."""
        return int(
            await self.fetchval(
                "SELECT count(*) FROM events e WHERE e.event_type = 'OrderPlaced' AND NOT EXISTS "
                "(SELECT 1 FROM processed_events p WHERE p.subscriber = $1 "
                "AND p.event_id = e.event_id)",
                LISTENER,
            )
        )

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        connection = await aio_pika.connect(self.settings.rabbitmq_url)
        async with connection:
            yield await connection.channel()

    async def backlog(self) -> dict[str, tuple[int, int]]:
        """Queues holding ready or unacknowledged messages: name -> (ready, unacked)."""
        counts = await queue_depths(self.env["BANYAN_TEST_VHOST"])
        return {name: count for name, count in counts.items() if count != (0, 0)}

    async def dead_letters(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """The messages in a dead-letter queue, left in it (requeued when the channel closes)."""
        messages = []
        async with self.channel() as channel:
            dlq = await channel.get_queue(queue, ensure=False)
            while (message := await dlq.get(fail=False)) is not None:
                messages.append(message)
        return messages

    async def diagnosis(self) -> str:
        """Where the log, the relay, the runner and the queues stand, and what processes said."""
        positions = await self.fetchval(
            "SELECT json_build_object('log', (SELECT max(position) FROM events), "
            "'relay', (SELECT json_object_agg(name, position) FROM relay_positions), "
            "'projections', (SELECT json_object_agg(name, position) FROM projection_positions))"
        )
        backlog = await self.backlog()
        dead = {
            queue: [_error(m) for m in await self.dead_letters(queue)]
            for queue in backlog
            if queue.startswith("dlq.")
        }
        return (
            f"positions: {positions}; unhandled events: {await self.unhandled_events()}\n"
            f"queues (ready, unacked): {backlog}\ndead letters: {dead}\n"
            f"{self.orders.tail()}\n{self.listener.tail()}"
        )


def _error(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    return f"{headers.get(h.ERROR_TYPE)!r}: {headers.get(h.ERROR_MESSAGE)!r}"


async def queue_depths(vhost: str) -> dict[str, tuple[int, int]]:
    """Every queue of a virtual host: name -> (ready, unacknowledged) messages."""
    output = await run(
        "rabbitmqctl", "-q", "list_queues", "-p", vhost,
        "name", "messages_ready", "messages_unacknowledged", "--no-table-headers",
    )  # fmt: skip
    rows = (line.split("\t") for line in output.splitlines() if line.count("\t") == 2)
    return {name: (int(ready), int(unacked)) for name, ready, unacked in rows}


async def run(*argv: str, timeout: float = 120) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await asyncio.wait_for(process.communicate(), timeout))[0].decode()
    assert process.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    return output


async def restart_rabbitmq() -> None:
    """Stop and start RabbitMQ's application: every connection drops; durable state stays."""
    try:
        await run("rabbitmqctl", "-q", "stop_app")
    finally:
        await run("rabbitmqctl", "-q", "start_app")


async def restart_postgresql() -> None:
    """Stop (fast: sessions are terminated) and start the local PostgreSQL cluster."""
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", *postgresql_cluster()]
    try:
        await run(*cluster, "stop")
    finally:
        await run(*cluster, "start")


def postgresql_cluster() -> tuple[str, str]:
    (version,) = os.listdir("/etc/postgresql")
    return version, "main"


async def assert_consistent(rig: Rig, ledger: Ledger) -> None:
    """Every answer clear; what was acknowledged is in the log once and reached everything."""
    assert not ledger.broken, f"answers that were neither a result nor an error: {ledger.broken}"
    assert set(ledger.refused) <= TRANSIENT, f"unexpected errors: {dict(ledger.refused)}"
    assert ledger.acknowledged, "no order was acknowledged"
    async with rig.database() as conn:
        rows = await conn.fetch(
            "SELECT correlation_id, array_agg(data->>'orderId') AS orders FROM events "
            "WHERE event_type = 'OrderPlaced' GROUP BY correlation_id"
        )
    placed = {row["correlation_id"]: row["orders"] for row in rows}
    twice = {c: orders for c, orders in placed.items() if len(orders) > 1}
    assert not twice, f"requests placed more than once: {twice}"
    lost = {c: o for c, o in ledger.acknowledged.items() if placed.get(c) != [o]}
    assert not lost, f"acknowledged but not in the log: {lost}"

    try:
        await _settles(rig)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await rig.diagnosis()}") from None


async def _settles(rig: Rig) -> None:
    await eventually(
        lambda: _is_zero(rig.unhandled_events()), timeout=30,
        what=f"the {LISTENER} subscriber to handle every OrderPlaced in the log",
    )  # fmt: skip
    async with rig.database() as conn:
        await eventually(
            lambda: caught_up(conn), timeout=30, what="order_summary to reach the end of the log"
        )
        assert await projected_orders(conn) == await folded_orders(conn)
    await eventually(
        lambda: _is_zero(rig.backlog()), timeout=30, what="every queue empty and acknowledged"
    )


async def _is_zero(count: Any) -> bool:
    return not await count
