"""`banyan status`: one screen on the running platform.

Services and their instances as discovery knows them, the `/health` of each process, queue
depths, dead letters, the relay's lag and projection lag. A part that cannot be read says why;
the rest is shown all the same (discovery, for one, may not be running). Each section says
whether what it shows is healthy: `banyan status` exits non-zero unless all are.
"""

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines import deadletters
from pipelines.database import connect
from pipelines.deadletters import QueueDepth
from pipelines.eventstore import OLDEST_APPEND
from pipelines.modules import load_services, metrics_ports, module_names
from pipelines.plugins import STATUS, contributions
from pipelines.registry import DISCOVERY, ListServices, ServiceInfo, ServiceList
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from pipelines.telemetry.lag import AGE_AFTER

TIMEOUT = 3.0  # seconds for each source
PROBE_HOST = "127.0.0.1"
MAX_QUEUES = 12  # lines of queues on the screen; the empty ones are summed up past that
RELAY_LAG_UNHEALTHY = 60.0  # seconds the oldest unpublished event may wait before it is a fault


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    healthy: bool = True

    def render(self) -> str:
        title = self.title if self.healthy else f"{self.title}  [UNHEALTHY]"
        return "\n".join([title, *(f"  {line}" for line in self.lines or ["(none)"])])

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "healthy": self.healthy, "lines": self.lines}


async def sections(settings: Settings) -> list[Section]:
    """Every section of the report, each read on its own."""
    parts: list[tuple[str, Callable[[Settings], Awaitable[list[Section]]]]] = [
        ("Services (discovery)", services),
        ("Processes (/health)", processes),
        ("Queues", queues),
        ("Event log", event_log),
        *contributions(STATUS),
    ]
    found = await asyncio.gather(*(_guarded(title, part, settings) for title, part in parts))
    return [section for group in found for section in group]


def render(found: list[Section]) -> str:
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    verdict = "healthy" if healthy(found) else "UNHEALTHY"
    return "\n\n".join([f"Banyan status  {now}  {verdict}", *(s.render() for s in found)])


def as_json(found: list[Section]) -> str:
    return json.dumps({"healthy": healthy(found), "sections": [s.to_json() for s in found]})


def healthy(found: list[Section]) -> bool:
    return all(section.healthy for section in found)


async def report(settings: Settings) -> str:
    return render(await sections(settings))


async def _guarded(
    title: str, part: Callable[[Settings], Awaitable[list[Section]]], settings: Settings
) -> list[Section]:
    try:
        return await asyncio.wait_for(part(settings), TIMEOUT * 2)
    except Exception as exc:  # one unreachable source must not hide the others
        return [Section(title, [f"unavailable: {_reason(exc)}"], healthy=False)]


async def services(settings: Settings) -> list[Section]:
    async with RpcClient(settings.rabbitmq_url, service_name="banyan-status") as rpc:
        reply = await rpc.send(DISCOVERY, ListServices(), timeout=TIMEOUT)
    listing = ServiceList.model_validate(reply.result())
    lines = [_service_line(s) for s in listing.services]
    return [Section("Services (discovery)", lines, all(s.healthy for s in listing.services))]


def _service_line(service: ServiceInfo) -> str:
    healthy = sum(1 for i in service.instances if i.healthy)
    instances = ", ".join(
        f"{i.instance_id} {'ok' if i.healthy else 'unhealthy'}" for i in service.instances
    )
    state = "healthy" if service.healthy else "UNHEALTHY"
    return (
        f"{service.name:<16} {service.version:<10} {state:<10} "
        f"{healthy}/{len(service.instances)} instances  {instances}"
    )


async def processes(settings: Settings) -> list[Section]:
    """Each process's `/health`: on its own HTTP port, or on the METRICS_PORT `banyan up`
    gives the services that have none."""
    targets = {"gateway": settings.gateway_port}
    ports = metrics_ports(settings)
    for module, service in zip(module_names(settings), load_services(settings), strict=True):
        port = settings.http_port(service.name, service.http_port)
        if port or module in ports:
            targets[service.name] = port or ports[module]
    results = await asyncio.gather(*(asyncio.to_thread(_probe, p) for p in targets.values()))
    lines = [f"{name:<16} :{port:<6} {result}" for (name, port), result in
             zip(targets.items(), results, strict=True)]  # fmt: skip
    return [Section("Processes (/health)", lines, all(r == "ok" for r in results))]


def _probe(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://{PROBE_HOST}:{port}/health", timeout=TIMEOUT) as r:
            body = json.load(r)
        return _health(body) if isinstance(body, dict) else "ok"
    except Exception as exc:
        return f"down ({_reason(exc)})"


def _health(body: dict[str, Any]) -> str:
    """`ok`, or `degraded` with each failing background task and its last error."""
    failing = body.get("failing") or {}
    status = str(body.get("status", "ok"))
    if isinstance(refused := body.get("refused"), dict):
        return f"{status}: {refused.get('message', '')}"
    if not isinstance(failing, dict) or not failing:
        return status
    return f"{status}: " + "; ".join(f"{task} failing ({error})" for task, error in failing.items())


async def queues(settings: Settings) -> list[Section]:
    found = await asyncio.to_thread(deadletters.list_queues, settings)
    work = [q for q in found if not q.name.startswith(deadletters.DLQ_PREFIX)]
    dead = [q for q in found if q.name.startswith(deadletters.DLQ_PREFIX) and q.messages]
    return [
        Section("Queues (ready messages)", _queue_lines(work)),
        Section(
            "Dead letters",
            [f"{q.messages:>8}  {q.name}" for q in sorted(dead, key=_depth)],
            healthy=not dead,
        ),
    ]


def _queue_lines(found: list[QueueDepth]) -> list[str]:
    ordered = sorted(found, key=_depth)
    shown = [q for q in ordered[:MAX_QUEUES] if q.messages] or ordered[:MAX_QUEUES]
    lines = [f"{q.messages:>8}  {q.name}" for q in shown]
    if rest := len(ordered) - len(shown):
        waiting = sum(q.messages for q in ordered[len(shown) :])
        lines.append(f"{waiting:>8}  in {rest} more queue(s)")
    return lines


def _depth(queue: QueueDepth) -> tuple[int, str]:
    return (-queue.messages, queue.name)


async def event_log(settings: Settings) -> list[Section]:
    conn = await connect(settings)
    try:
        bound = await conn.fetchval("SELECT readable_bound()")
        oldest = await conn.fetchval(OLDEST_APPEND)
        relay = await conn.fetchval("SELECT max(position) FROM relay_positions")
        relay_lag = await conn.fetchval(AGE_AFTER, relay or 0) or 0.0
    finally:
        await conn.close()
    stalled = oldest > settings.append_stall_timeout / 2
    behind = relay is not None and relay_lag > RELAY_LAG_UNHEALTHY
    lines = [
        f"readable up to position {bound - 1}",
        f"oldest append in flight {oldest:.1f} s" + ("  STALLED: readers wait for it" * stalled),
        "relay has not run yet" if relay is None else
        f"relay at position {relay}: lag {max(0, bound - 1 - relay)} events / {relay_lag:.1f} s"
        + ("  BEHIND" * behind),
    ]  # fmt: skip
    return [Section("Event log", lines, healthy=not (stalled or behind))]


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason).splitlines()[0][:120]
