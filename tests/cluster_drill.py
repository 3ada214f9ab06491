"""`make drill-cluster`: the platform on the local cluster (`make cluster`) under steady load,
through one fault of each engine in turn.

Two instances of each example service and of a listener service (`tests.drill_listener`) run
as subprocesses, two gateways in this process. Clients place, cancel and read orders through
both gateways while the drill stops the RabbitMQ node holding most queue leaders and starts it
again, promotes the PostgreSQL standby (the old primary is retired), and fails the Redis
master over. Then it checks that every acknowledged command is in the log once, that the
listener received every OrderPlaced and that `order_summary` equals the fold of the log, and
prints, last: `cluster drill: N acknowledged, N in log, 0 lost, 0 duplicated`. Exit status 1
on any loss, duplicate, unclear answer or request that hung past its timeout.

Run it as `make drill-cluster` (which starts and removes the cluster around it); it reads the
cluster's settings from build/cluster/cluster.env.
"""

import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from examples.orders import service as orders_service
from gateway.app import create_app
from gateway.registry import from_services
from pipelines.database import connect
from pipelines.http import HttpServer
from pipelines.identity import Caller, TokenCodec
from pipelines.settings import Settings
from tests.drill_rig import ANSWER_TIMEOUT, ITEMS, LISTENER, TRANSIENT, Child, error_code, run
from tests.folds import caught_up, folded_orders, projected_orders

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_ENV = ROOT / "build" / "cluster" / "cluster.env"
CLIENTS_PER_GATEWAY = 3
PAUSE = 0.05  # seconds between one client's requests
STEADY = 8.0  # seconds of load before, between and after the faults
FAULT_DOWN = 10.0  # seconds a stopped RabbitMQ node stays down
# an order fulfilment already confirmed or rejected cannot be cancelled: a clear answer
CANCEL_CONFLICT = "CONFLICT (cancel of a decided order)"
PERMISSIONS = frozenset({"orders:place", "orders:cancel", "orders:read"})
SERVICES = {
    "orders": "examples.orders:app",
    "inventory": "examples.inventory:app",
    "fulfilment": "examples.fulfilment:app",
    "listener": "tests.drill_listener:app",
}


@dataclass
class Ledger:
    """What the clients were told, and when each request succeeded or failed."""

    placed: dict[str, str] = field(default_factory=dict)  # correlation id -> order id
    cancelled: set[str] = field(default_factory=set)  # order ids whose cancel was acknowledged
    refused: Counter[str] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)  # hangs, transport errors, other bodies
    outcomes: list[tuple[float, bool]] = field(default_factory=list)  # (answered at, ok)

    def unavailable(self, since: float) -> float | None:
        """Seconds from the first failure after `since` to the first success after it."""
        failed = next((at for at, ok in self.outcomes if at >= since and not ok), None)
        if failed is None:
            return 0.0
        back = next((at for at, ok in self.outcomes if at > failed and ok), None)
        return None if back is None else back - failed


class Client:
    """One client of one gateway: places orders, reads each back, cancels every third."""

    def __init__(self, http: httpx.AsyncClient, token: str, ledger: Ledger) -> None:
        self.http, self.ledger = http, ledger
        self.auth = {"Authorization": f"Bearer {token}"}

    async def run(self, stopping: asyncio.Event) -> None:
        count = 0
        while not stopping.is_set():
            count += 1
            order_id, position = await self.send("POST", "/api/orders/place-order",
                                                 json={"items": ITEMS})  # fmt: skip
            if order_id is not None:
                await self.send("GET", f"/api/orders/get-order?orderId={order_id}",
                                position=position)  # fmt: skip
                if count % 3 == 0:
                    await self.send("POST", "/api/orders/cancel-order",
                                    json={"orderId": order_id})  # fmt: skip
            await asyncio.sleep(PAUSE)

    async def send(
        self, method: str, path: str, json: object = None, position: str | None = None
    ) -> tuple[str | None, str | None]:
        """(the order id of an acknowledged place-order, its event position)."""
        correlation_id = uuid.uuid4().hex
        headers = {**self.auth, "X-Correlation-ID": correlation_id}
        if position is not None:
            headers["X-Min-Position"] = position
        try:
            response = await self.http.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            self.ledger.broken.append(f"{method} {path}: {type(exc).__name__} {exc}")
            self.ledger.outcomes.append((time.monotonic(), False))
            return None, None
        if not self.answered(response, correlation_id, path):
            return None, None
        body = response.json()
        if path.endswith("place-order"):
            self.ledger.placed[correlation_id] = body["orderId"]
            return body["orderId"], response.headers["X-Event-Position"]
        if path.endswith("cancel-order"):
            self.ledger.cancelled.add(json["orderId"])  # type: ignore[index]
        return None, None

    def answered(self, response: httpx.Response, correlation_id: str, path: str) -> bool:
        """Whether `response` is a success; a refusal is counted, an unclear answer noted."""
        ok = response.status_code == 200
        code = None if ok else error_code(response, correlation_id)
        if code == "CONFLICT" and path.endswith("cancel-order"):
            code = CANCEL_CONFLICT
        self.ledger.outcomes.append((time.monotonic(), ok or code == CANCEL_CONFLICT))
        if code is not None:
            self.ledger.refused[code] += 1
        elif not ok:
            self.ledger.broken.append(f"{response.status_code} {response.text[:300]}")
        return ok


def cluster_settings() -> dict[str, str]:
    if not CLUSTER_ENV.exists():
        sys.exit(f"no local cluster: {CLUSTER_ENV} is missing (make cluster)")
    pairs = (line.split("=", 1) for line in CLUSTER_ENV.read_text().splitlines() if "=" in line)
    env = {key: value for key, value in pairs}
    env.update(COMMAND_TIMEOUT="10", RATE_LIMIT_PER_USER="1000000", ANNOUNCE_ENABLED="false")
    return env


async def cluster(script: str) -> str:
    """`script` run by bash with scripts/cluster-env.sh's names (`rabbitmqctl_on 1 stop_app`)."""
    return await run("bash", "-c", f'source "{ROOT}/scripts/cluster-env.sh"; {script}')


async def busiest_rabbitmq_node() -> int:
    """The node (1-3) that leads the most quorum queues."""
    out = await cluster("rabbitmqctl_on 1 list_queues name leader --formatter json")
    leaders = Counter(q["leader"] for q in json.loads(out[out.index("[") :]))
    node = leaders.most_common(1)[0][0]  # banyanN@localhost
    return int(node.removeprefix("banyan").split("@")[0])


async def stop_rabbitmq_node() -> str:
    node = await busiest_rabbitmq_node()
    await cluster(f"rabbitmqctl_on {node} stop_app")
    await asyncio.sleep(FAULT_DOWN)
    await cluster(f"rabbitmqctl_on {node} start_app")
    return f"RabbitMQ node banyan{node} (most queue leaders) stopped for {FAULT_DOWN:.0f}s"


async def promote_postgresql_standby() -> str:
    await cluster(
        'as_postgres "$PG_BIN/pg_ctl" -D "$STATE/postgres/primary" -m fast -w stop && '
        'as_postgres "$PG_BIN/pg_ctl" -D "$STATE/postgres/standby" -w promote'
    )
    return "PostgreSQL standby promoted, old primary retired"


async def fail_redis_over() -> str:
    await cluster('redis-cli -p "${SENTINEL_PORTS[0]}" sentinel failover "$REDIS_MASTER_NAME"')
    return "Redis master failed over by Sentinel"


FAULTS = [stop_rabbitmq_node, promote_postgresql_standby, fail_redis_over]


async def check(ledger: Ledger, settings: Settings) -> tuple[int, int, int, int, list[str]]:
    """(acknowledged, in log, lost, duplicated, problems)."""
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT correlation_id, array_agg(data->>'orderId') AS orders FROM events "
            "WHERE event_type = 'OrderPlaced' GROUP BY correlation_id"
        )
        placed = {row["correlation_id"]: row["orders"] for row in rows}
        cancels = Counter(
            await conn.fetchval(
                "SELECT coalesce(array_agg(data->>'orderId'), '{}') FROM events "
                "WHERE event_type = 'OrderCancelled'"
            )
        )
        problems = await settled(conn)
    finally:
        await conn.close()
    acknowledged = len(ledger.placed) + len(ledger.cancelled)
    in_log = sum(1 for c, o in ledger.placed.items() if placed.get(c) == [o])
    in_log += sum(1 for order in ledger.cancelled if cancels[order] == 1)
    duplicated = sum(len(o) - 1 for o in placed.values()) + sum(n - 1 for n in cancels.values())
    if ledger.broken:
        problems.append(f"unclear answers or hangs: {ledger.broken[:5]}")
    if unexpected := set(ledger.refused) - TRANSIENT - {CANCEL_CONFLICT}:
        problems.append(f"unexpected errors: {dict(ledger.refused)} ({unexpected})")
    return acknowledged, in_log, acknowledged - in_log, duplicated, problems


async def settled(conn: asyncpg.Connection) -> list[str]:
    """Wait (bounded) for the listener and the projection to take in the whole log."""
    unhandled = ("SELECT count(*) FROM events e WHERE e.event_type = 'OrderPlaced' AND NOT "
                 "EXISTS (SELECT 1 FROM processed_events p WHERE p.subscriber = $1 AND "
                 "p.event_id = e.event_id)")  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not await conn.fetchval(unhandled, LISTENER) and await caught_up(conn):
            break
        await asyncio.sleep(0.5)
    problems = []
    if missed := await conn.fetchval(unhandled, LISTENER):
        problems.append(f"{missed} OrderPlaced events the listener never received")
    if not await caught_up(conn):
        problems.append("order_summary did not reach the end of the log")
    elif await projected_orders(conn) != await folded_orders(conn):
        problems.append("order_summary differs from the fold of the log")
    return problems


async def drill() -> int:
    env = cluster_settings()
    os.environ.update(env)
    settings = Settings()
    children = [
        Child(f"{name}-{i}", [sys.executable, "-m", "faststream", "run", app],
              {**os.environ, **({"RELAY_ENABLED": "false"} if name == "listener" else {})})
        for name, app in SERVICES.items() for i in (1, 2)
    ]  # fmt: skip
    await asyncio.gather(*(child.start(timeout=120) for child in children))
    gateways = [create_app(settings, from_services([orders_service])) for _ in range(2)]
    servers = [HttpServer(app, "127.0.0.1", 0) for app in gateways]
    for app, server in zip(gateways, servers, strict=True):
        await app.state.gateway.start()
        await server.start()
    codec, ledger, stopping = TokenCodec(settings), Ledger(), asyncio.Event()
    clients = []
    for server in servers:
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}",
                                 timeout=ANSWER_TIMEOUT)  # fmt: skip
        for _ in range(CLIENTS_PER_GATEWAY):
            user = f"drill-{uuid.uuid4().hex[:8]}"
            caller = Caller(user, f"{user}@example.com", user, PERMISSIONS)
            clients.append(Client(http, codec.issue(caller, ttl=3600), ledger))
    load = [asyncio.create_task(client.run(stopping)) for client in clients]
    try:
        await asyncio.sleep(STEADY)
        for fault in FAULTS:
            began = time.monotonic()
            what = await fault()
            await asyncio.sleep(STEADY)
            window = ledger.unavailable(began)
            shown = "never recovered" if window is None else f"{window:.1f}s unavailable"
            print(f"fault: {what}: {shown}", flush=True)
    finally:
        stopping.set()
        await asyncio.gather(*load)
        for app, server in zip(gateways, servers, strict=True):
            await server.stop()
            await app.state.gateway.stop()
        await asyncio.gather(*(child.stop() for child in children))
    acknowledged, in_log, lost, duplicated, problems = await check(ledger, settings)
    print(f"refused: {dict(ledger.refused)}")
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print("\n".join(child.tail(15) for child in children))
    print(f"cluster drill: {acknowledged} acknowledged, {in_log} in log, {lost} lost, "
          f"{duplicated} duplicated")  # fmt: skip
    return 1 if lost or duplicated or problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(drill()))
