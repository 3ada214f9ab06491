"""Discovery against real RabbitMQ, PostgreSQL and Redis: the example service announces itself,
falls silent, comes back; discovery restarts; bad and breaking registrations are refused;
instances silent past the retention are removed."""

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import httpx
import pytest
from pydantic import create_model

from discovery import service as discovery_service
from discovery.compatibility import breaking_changes
from discovery.registrar import Registrar
from examples.orders import service as orders_service
from examples.orders.contracts import GetOrder, ListOrders
from pipelines import Caller, Command, Context, Event, Model, Service, upcaster
from pipelines.cli import parser
from pipelines.contracts import Contract
from pipelines.idempotency import record_id
from pipelines.identity import TokenCodec
from pipelines.instance import ServiceInstance
from pipelines.registry import (
    ContractInfo,
    ContractList,
    ContractsChanged,
    DeregisterService,
    Heartbeat,
    ListContracts,
    ListServices,
    RegisterService,
    ServiceDeregistered,
    ServiceHealthChanged,
    ServiceList,
    describe,
)
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from tests.conftest import eventually
from tests.tcp_proxy import free_port

# Short, but not so short that a busy shared database delays heartbeats past 3 intervals.
HEARTBEAT = 0.5
# 3 missed heartbeats, then a sweep of the monitor and the check's own round trips
UNHEALTHY_WITHIN = 4 * HEARTBEAT
REGISTER_QUEUE = "service.discovery.commands.RegisterService"


def announcing(settings: Settings) -> Settings:
    """Settings of the instances a test starts and stops: they announce themselves quickly
    and leave relaying the log to the long-lived `announcements` subscriber."""
    return frugal(settings).model_copy(
        update={"announce_enabled": True, "heartbeat_interval": HEARTBEAT, "relay_enabled": False}
    )


def frugal(settings: Settings) -> Settings:
    """Few connections: the database server is shared with every other test process."""
    return settings.model_copy(update={"database_pool_size": 3})


class Discovery:
    """A discovery instance on a free port, which a test may restart."""

    def __init__(self, settings: Settings) -> None:
        self.settings = announcing(settings)
        self.instance: ServiceInstance | None = None

    async def start(self) -> None:
        port = free_port()
        self.instance = discovery_service.instance(
            self.settings.model_copy(update={"discovery_port": port})
        )
        await self.instance.start()
        reader = Caller("registry-reader", permissions=frozenset({"discovery:read"}))
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TokenCodec(self.settings).issue(reader)}"},
        )
        announcer = self.instance.announcer
        assert announcer is not None
        await eventually(announcer.registered.is_set, what="discovery registering itself")

    async def stop(self) -> None:
        if self.instance is not None:
            await self.http.aclose()
            await self.instance.stop()
            self.instance = None

    async def get(self, path: str, status: int = 200) -> Any:
        response = await self.http.get(path)
        assert response.status_code == status, response.text
        return response.json()

    async def service(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.get(f"/api/services/{name}")
        return found


@pytest.fixture
async def discovery(settings: Settings) -> AsyncIterator[Discovery]:
    running = Discovery(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def announcements(settings: Settings) -> AsyncIterator[list[Event]]:
    """Every event discovery publishes, as a subscriber receives it (its relay publishes)."""
    seen: list[Event] = []
    watchers = Service("discovery-watchers")

    async def collect(event: Event, ctx: Context) -> None:
        seen.append(event)

    for event in (ContractsChanged, ServiceHealthChanged, ServiceDeregistered):
        watchers.on(event)(collect)
    instance = watchers.instance(frugal(settings))
    await instance.start()
    yield seen
    await instance.stop()


@pytest.fixture
async def start_orders(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """Start instances of the example service that announce themselves (stopped after)."""
    started: list[ServiceInstance] = []

    async def start() -> ServiceInstance:
        instance = orders_service.instance(announcing(settings))
        started.append(instance)
        await instance.start()
        return instance

    yield start
    for instance in started:
        if instance.runtime.pool is not None:  # not stopped by the test already
            await instance.stop()


async def silence(instance: ServiceInstance) -> None:
    """The process freezes or its network drops: no heartbeat, no goodbye."""
    task = instance.supervisor.tasks.pop("announcer").task
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def resume(instance: ServiceInstance) -> None:
    assert instance.announcer is not None
    instance._spawn(instance.announcer.run, "announcer")


def health_event(
    seen: list[Event], instance_id: str, healthy: bool, since: int = 0
) -> ServiceHealthChanged | None:
    """The first such event from `seen[since]` on."""
    return next(
        (
            e
            for e in seen[since:]
            if isinstance(e, ServiceHealthChanged)
            and e.instance_id == instance_id
            and e.healthy is healthy
        ),
        None,
    )


def instance_health(service: dict[str, Any]) -> dict[str, bool]:
    return {i["instanceId"]: i["healthy"] for i in service["instances"]}


async def listed_healthy(discovery: Discovery, instance: ServiceInstance) -> bool:
    found = await discovery.get("/api/services")
    return any(
        i["instanceId"] == instance.instance_id and i["healthy"]
        for s in found["services"]
        for i in s["instances"]
    )


# --- the example service announced --------------------------------------------------------


async def test_contracts_appear_over_http(discovery, start_orders, rpc: RpcClient) -> None:
    orders = await start_orders()
    await eventually(lambda: listed_healthy(discovery, orders), what="orders registered")

    version = orders_service.version
    announced = {c.message_type: c for c in orders_service.registration("x").contracts}
    contracts = (await discovery.get("/api/contracts"))["contracts"]
    of_orders = {c["messageType"]: c for c in contracts if c["serviceName"] == "orders"}
    assert of_orders.keys() == announced.keys()
    for name, contract in of_orders.items():
        assert contract.pop("version") == version and contract.pop("serviceName") == "orders"
        assert ContractInfo.model_validate(contract) == announced[name]  # schemas and all
    place = of_orders["PlaceOrder"]
    assert place["kind"] == "command" and place["isPublic"] is False
    assert place["requiredPermissions"] == ["orders:place"]
    assert "customerId" in place["inputSchema"]["properties"]
    assert "orderId" in place["outputSchema"]["properties"]
    assert of_orders["OrderPlaced"]["kind"] == "event"

    listed = await discovery.service("orders")
    assert listed["version"] == version and listed["versions"] == [version]
    assert listed["healthy"] is True
    assert instance_health(listed)[orders.instance_id] is True
    assert {c["messageType"] for c in listed["contracts"]} == announced.keys()
    assert (await discovery.get("/health"))["status"] == "ok"
    missing = await discovery.get("/api/services/nowhere", status=404)
    for headers, status, code in [
        ({"Authorization": ""}, 401, "NO_AUTH_HEADER"),
        ({"Authorization": f"Bearer {TokenCodec(discovery.settings).issue(Caller('nosy'))}"},
         403, "INSUFFICIENT_PERMISSIONS"),
    ]:  # fmt: skip
        for path in ("/api/services", "/api/services/orders", "/api/contracts"):
            refused = await discovery.http.get(path, headers=headers)
            assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)
    assert (await discovery.http.get("/health", headers={"Authorization": ""})).status_code == 200
    assert missing["error"]["code"] == "NOT_FOUND"

    # the same registry over the bus, in the shapes the gateway parses
    over_bus = ContractList.model_validate((await rpc.send("discovery", ListContracts())).result())
    assert over_bus == ContractList.model_validate(await discovery.get("/api/contracts"))
    services = ServiceList.model_validate((await rpc.send("discovery", ListServices())).result())
    assert "orders" in {s.name for s in services.services}


async def test_the_registry_shows_what_each_service_calls(
    discovery, start_orders, settings
) -> None:
    callers = Service("order-watcher", calls=[GetOrder, ListOrders])
    instance = callers.instance(announcing(settings))
    await instance.start()
    try:
        await eventually(lambda: listed_healthy(discovery, instance), what="it registered")
        assert (await discovery.service("order-watcher"))["calls"] == ["GetOrder", "ListOrders"]
    finally:
        await instance.stop()
    orders = await start_orders()
    await eventually(lambda: listed_healthy(discovery, orders), what="orders registered")
    assert (await discovery.service("orders"))["calls"] == []  # it calls nobody


async def test_silent_instance_turns_unhealthy_then_recovers(
    discovery, start_orders, announcements
) -> None:
    orders = await start_orders()
    await eventually(lambda: listed_healthy(discovery, orders), what="orders registered")
    loop = asyncio.get_running_loop()
    silenced_at = loop.time()
    await silence(orders)

    async def unhealthy() -> bool:
        return instance_health(await discovery.service("orders"))[orders.instance_id] is False

    await eventually(unhealthy, timeout=5, what="the silent instance turning unhealthy")
    took = loop.time() - silenced_at
    assert HEARTBEAT * 1.5 < took < UNHEALTHY_WITHIN, f"unhealthy after {took:.2f}s"
    assert (await discovery.service("orders"))["healthy"] is False
    await eventually(lambda: health_event(announcements, orders.instance_id, False))
    event = health_event(announcements, orders.instance_id, False)
    assert event is not None and event.service_name == "orders"
    assert event.service_healthy is False

    mark = len(announcements)
    resume(orders)
    await eventually(lambda: health_event(announcements, orders.instance_id, True, mark))
    assert instance_health(await discovery.service("orders"))[orders.instance_id] is True
    assert (await discovery.service("orders"))["healthy"] is True


async def test_service_stays_healthy_while_one_instance_is(
    discovery, start_orders, announcements
) -> None:
    first, second = await start_orders(), await start_orders()
    for instance in (first, second):
        await eventually(functools.partial(listed_healthy, discovery, instance))

    await silence(first)
    await eventually(lambda: health_event(announcements, first.instance_id, False))
    event = health_event(announcements, first.instance_id, False)
    assert event is not None and event.service_healthy is True
    listed = await discovery.service("orders")
    health = instance_health(listed)
    assert health[first.instance_id] is False and health[second.instance_id] is True
    assert listed["healthy"] is True

    await second.stop()  # gracefully: it says goodbye
    await eventually(
        lambda: any(
            isinstance(e, ServiceDeregistered) and e.instance_id == second.instance_id
            for e in announcements
        ),
        what="ServiceDeregistered",
    )
    goodbye = health_event(announcements, second.instance_id, False)
    assert goodbye is not None and goodbye.service_healthy is False
    listed = await discovery.service("orders")
    assert second.instance_id not in instance_health(listed)
    assert listed["healthy"] is False


async def test_registry_survives_a_discovery_restart(
    discovery, start_orders, announcements, rpc: RpcClient, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="banyan.discovery")
    orders = await start_orders()
    await eventually(lambda: listed_healthy(discovery, orders), what="orders registered")
    before = await discovery.service("orders")
    await silence(orders)  # nothing re-registers while discovery is away

    await discovery.stop()
    await discovery.start()

    after = await discovery.service("orders")
    assert after["contracts"] == before["contracts"]
    assert orders.instance_id in instance_health(after)
    services = ServiceList.model_validate((await rpc.send("discovery", ListServices())).result())
    assert orders.instance_id in {
        i.instance_id for s in services.services if s.name == "orders" for i in s.instances
    }
    # still silent, it turns unhealthy; its heartbeats are then recognised, no registration
    await eventually(lambda: health_event(announcements, orders.instance_id, False))
    mark, logged = len(announcements), len(caplog.records)
    resume(orders)
    await eventually(lambda: health_event(announcements, orders.instance_id, True, mark))
    since_resumed = [r.getMessage() for r in caplog.records[logged:]]
    assert f"orders instance {orders.instance_id} is heartbeating again: healthy" in since_resumed
    assert not any(m.startswith("registered orders") for m in since_resumed)


# --- validation at registration -----------------------------------------------------------


class Line(Model):
    sku: str
    quantity: int


def lockers_v1() -> list[ContractInfo]:
    class RentLocker(Command, permissions=["lockers:rent"]):
        customer_id: str
        lines: list[Line]
        note: str | None = None

    class LockerRented(Event, service="lockers"):
        rental_id: str
        lines: list[Line]

    return [describe(RentLocker), describe(LockerRented)]


def lockers_v1_compatible() -> list[ContractInfo]:
    """Adds an optional input field, accepts more input, adds an optional event field: fine
    (a required one would leave the events already stored unreadable)."""

    class WideLine(Model):
        sku: str
        quantity: int | str

    class RentLocker(Command, permissions=["lockers:rent"]):
        customer_id: str
        lines: list[WideLine]
        note: str | None = None
        priority: int = 0

    class LockerRented(Event, service="lockers"):
        rental_id: str
        lines: list[Line]
        warehouse: str = "main"

    return [describe(RentLocker), describe(LockerRented)]


def lockers_v2(event_version: int = 1) -> list[ContractInfo]:
    """Drops a field, adds a required one, changes a nested type (of the event too: from
    `event_version` 2, with the upcaster that reads the stored events)."""

    class Line(Model):
        sku: str
        quantity: str

    class RentLocker(Command, permissions=["lockers:rent"]):
        lines: list[Line]
        warehouse: str

    class LockerRented(Event, service="lockers", version=event_version):
        rental_id: str
        lines: list[Line]

    if event_version > 1:
        upcaster(LockerRented, 1)(lambda data: data)
    return [describe(RentLocker), describe(LockerRented)]


def registration(
    name: str, version: str, contracts: list[ContractInfo], instance: str | None = None
) -> RegisterService:
    return RegisterService(
        service_name=name,
        version=version,
        instance_id=instance or f"{name}-{uuid.uuid4().hex[:6]}",
        contracts=contracts,
    )


async def send(rpc: RpcClient, message: Contract) -> Any:
    return await rpc.send("discovery", message, timeout=10)


def rejections(caplog: pytest.LogCaptureFixture, service: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "banyan.discovery.registry"
        and r.getMessage().startswith(f"rejected registration of {service} ")
    ]


async def test_incompatible_change_is_rejected_with_the_diff(
    discovery, rpc: RpcClient, announcements, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="banyan.discovery")
    first = registration("lockers", "1.0.0", lockers_v1())
    assert (await send(rpc, first)).result()["changed"] is True
    await eventually(
        lambda: any(
            isinstance(e, ContractsChanged) and e.service_name == "lockers" for e in announcements
        )
    )

    reply = await send(rpc, registration("lockers", "1.1.0", lockers_v2()))
    assert not reply.ok
    error = reply.json()["error"]
    assert error["code"] == "CONFLICT"
    assert "lockers 1.1.0 would break callers of 1.0.0" in error["message"]
    assert "2.0.0" in error["message"]
    assert [
        {k: v for k, v in change.items() if k != "message"}
        for change in error["details"]["breakingChanges"]
    ] == [
        {"contract": "LockerRented", "schema": "input", "path": "lines[].quantity",
         "change": "type-changed", "old": "integer", "new": "string"},
        {"contract": "LockerRented", "change": "version-not-bumped", "old": "1"},
        {"contract": "RentLocker", "schema": "input", "path": "customerId",
         "change": "field-removed"},
        {"contract": "RentLocker", "schema": "input", "path": "lines[].quantity",
         "change": "type-changed", "old": "integer", "new": "string"},
        {"contract": "RentLocker", "schema": "input", "path": "note", "change": "field-removed"},
        {"contract": "RentLocker", "schema": "input", "path": "warehouse",
         "change": "required-field-added"},
    ]  # fmt: skip
    assert rejections(caplog, "lockers")
    listed = await discovery.service("lockers")
    assert listed["version"] == "1.0.0" and listed["versions"] == ["1.0.0"]

    compatible = await send(rpc, registration("lockers", "1.1.0", lockers_v1_compatible()))
    assert compatible.result() == {
        "accepted": True, "serviceName": "lockers", "version": "1.1.0", "changed": True,
    }  # fmt: skip

    # a new major may break callers, never the log: the event's new shape needs an upcaster
    unreadable = await send(rpc, registration("lockers", "2.0.0", lockers_v2()))
    assert "stored events cannot be read" in unreadable.json()["error"]["message"]
    major = await send(rpc, registration("lockers", "2.0.0", lockers_v2(event_version=2)))
    assert major.result()["changed"] is True
    await eventually(
        lambda: any(
            isinstance(e, ContractsChanged) and e.service_name == "lockers" and e.version == "2.0.0"
            for e in announcements
        ),
        what="ContractsChanged for lockers 2.0.0",
    )
    listed = await discovery.service("lockers")
    assert listed["version"] == "2.0.0"
    assert listed["versions"] == ["1.0.0", "1.1.0", "2.0.0"]
    reserve = next(c for c in listed["contracts"] if c["messageType"] == "RentLocker")
    assert "warehouse" in reserve["inputSchema"]["required"]

    # an instance of an older major version still running: listed, the contracts stay 2.0.0
    old = await send(rpc, registration("lockers", "1.1.0", lockers_v1_compatible()))
    assert old.result()["changed"] is False
    assert (await discovery.service("lockers"))["version"] == "2.0.0"


async def test_invalid_registrations_are_rejected_logged_and_not_stored(
    discovery, rpc: RpcClient, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="banyan.discovery")
    owner = orders_service.registration(f"orders-test-{uuid.uuid4().hex[:6]}")
    assert (await send(rpc, owner)).ok
    place = next(c for c in owner.contracts if c.message_type == "PlaceOrder")

    duplicate = await send(rpc, registration("copycat", "1.0.0", [place]))
    assert duplicate.json()["error"]["code"] == "CONFLICT"
    assert duplicate.json()["error"]["details"]["duplicates"] == [
        {"messageType": "PlaceOrder", "owner": "orders"}
    ]

    bad_permission = place.model_copy(
        update={"message_type": "PlaceThing", "required_permissions": ["Orders Place"]}
    )
    refused = (await send(rpc, registration("badperms", "1.0.0", [bad_permission]))).json()
    assert refused["error"]["code"] == "VALIDATION_ERROR"
    assert "invalid permission 'Orders Place'" in refused["error"]["message"]
    assert refused["error"]["details"][0]["field"] == "contracts[0].requiredPermissions[0]"

    bad_schema = place.model_copy(
        update={
            "message_type": "PlaceOther",
            "input_schema": {
                "type": "object",
                "properties": {"when": {"type": "date"}, "line": {"$ref": "#/$defs/Line"}},
            },
        }
    )
    refused = (await send(rpc, registration("badschema", "1.0.0", [bad_schema]))).json()
    assert refused["error"]["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in refused["error"]["details"]} == {
        "contracts[0].inputSchema.properties.when.type",
        "contracts[0].inputSchema.properties.line.$ref",
    }

    for name in ("copycat", "badperms", "badschema"):
        assert rejections(caplog, name), f"{name} rejection not logged"
        await discovery.get(f"/api/services/{name}", status=404)
    pool = discovery.instance.runtime.pool
    assert not await pool.fetchval(
        "SELECT count(*) FROM discovery_services WHERE name = ANY($1::text[])",
        ["copycat", "badperms", "badschema"],
    )
    await send(rpc, DeregisterService(service_name="orders", instance_id=owner.instance_id))


MALFORMED = [
    b"not json at all",
    b"[]",
    b"{}",
    b'{"serviceName": 5, "version": "1.0.0", "instanceId": "x", "contracts": []}',
    json.dumps(
        {
            "serviceName": "broken",
            "version": "1.0.0",
            "instanceId": "broken-1",
            "contracts": [{"messageType": "DoIt", "kind": "command"}],
        }
    ).encode(),
    json.dumps(
        {"serviceName": "broken", "version": "one", "instanceId": "broken-1", "contracts": []}
    ).encode(),
]


async def test_malformed_registration_messages_change_nothing(
    discovery, rpc: RpcClient, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="banyan.discovery")
    pool = discovery.instance.runtime.pool
    tables = ["discovery_services", "discovery_versions", "discovery_contracts"]
    tables.append("discovery_instances")

    async def counts() -> list[int]:
        return [await pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables]

    before = await counts()
    ids = [uuid.uuid4().hex for _ in MALFORMED]
    for body, message_id in zip(MALFORMED, ids, strict=True):
        reply = await rpc.request(
            REGISTER_QUEUE,
            body,
            headers={"x-message-type": "RegisterService"},
            message_id=message_id,
            timeout=10,
        )
        assert not reply.ok, body
        assert reply.json()["error"]["code"] == "VALIDATION_ERROR", body
        assert reply.json()["error"]["details"], body

    assert await counts() == before
    assert not await pool.fetchval(
        "SELECT count(*) FROM events WHERE causation_id = ANY($1::text[])", ids
    )
    records = [record_id(i, "discovery", "RegisterService", None) for i in ids]  # anonymous
    assert not await pool.fetchval(
        "SELECT count(*) FROM command_results WHERE command_id = ANY($1::text[])", records
    )
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("RegisterService" in r.getMessage() for r in logged) >= len(MALFORMED)
    assert any("'one' is not a semantic version" in r.getMessage() for r in logged)


# --- instances silent past the retention ----------------------------------------------------


async def silent_since(pool: Any, service: str, instances: list[str], seconds: float) -> None:
    """Date the instances' last heartbeats `seconds` back, a second apart (the first oldest)."""
    await pool.execute(
        "UPDATE discovery_instances SET last_heartbeat = now() - make_interval(secs => "
        "$3 + array_length($2::text[], 1) - array_position($2::text[], instance_id)) "
        "WHERE service_name = $1 AND instance_id = ANY($2::text[])",
        service,
        instances,
        seconds,
    )


async def deregistrations(pool: Any, service: str) -> list[str]:
    """The instances that the service's stream in the event log says were deregistered."""
    rows = await pool.fetch(
        "SELECT data->>'instanceId' FROM events WHERE aggregate_type = 'RegisteredService' "
        "AND aggregate_id = $1 AND event_type = 'ServiceDeregistered' ORDER BY position",
        service,
    )
    return [row[0] for row in rows]


def deregistered(seen: list[Event], instance_id: str) -> bool:
    return any(isinstance(e, ServiceDeregistered) and e.instance_id == instance_id for e in seen)


async def test_instances_silent_past_the_retention_are_removed(
    discovery, rpc: RpcClient, announcements
) -> None:
    assert discovery.settings.discovery_instance_retention == 3600
    name = f"retiring-{uuid.uuid4().hex[:6]}"
    old, recent = (registration(name, "1.0.0", [], f"{name}-{age}") for age in ("old", "recent"))
    for message in (old, recent):
        assert (await send(rpc, message)).ok
    pool = discovery.instance.runtime.pool
    await silent_since(pool, name, [old.instance_id], 2 * 3600)

    # the monitor turns it unhealthy, then forgets it, announcing both
    await eventually(lambda: deregistered(announcements, old.instance_id), what="its removal")
    assert health_event(announcements, old.instance_id, False) is not None
    listed = await discovery.service(name)
    assert list(instance_health(listed)) == [recent.instance_id]
    assert await deregistrations(pool, name) == [old.instance_id]
    reply = await send(rpc, Heartbeat(service_name=name, instance_id=old.instance_id))
    assert reply.result() == {"known": False}  # which makes an announcer register again

    # silent for seconds only: unhealthy, still listed; once past the retention, gone too
    await eventually(lambda: health_event(announcements, recent.instance_id, False))
    assert instance_health(await discovery.service(name)) == {recent.instance_id: False}
    await silent_since(pool, name, [recent.instance_id], 2 * 3600)
    await eventually(lambda: deregistered(announcements, recent.instance_id))
    listed = await discovery.service(name)
    assert listed["instances"] == [] and listed["healthy"] is False
    assert listed["version"] == "1.0.0"  # as after the last goodbye: known, with no instance

    back = await send(rpc, registration(name, "1.0.0", [], old.instance_id))
    assert back.ok
    assert instance_health(await discovery.service(name)) == {old.instance_id: True}


async def test_removals_are_bounded_and_announced_once_by_several_monitors(
    discovery, settings: Settings, rpc: RpcClient
) -> None:
    name = f"retiring-{uuid.uuid4().hex[:6]}"
    instances = [f"{name}-{i}" for i in range(5)]
    for instance in instances:
        assert (await send(rpc, registration(name, "1.0.0", [], instance))).ok
    pool = discovery.instance.runtime.pool
    await pool.execute(
        "UPDATE discovery_instances SET healthy = false WHERE service_name = $1", name
    )
    # past a retention of 10 minutes, within the monitors' hour: only the call below removes
    await silent_since(pool, name, instances, 1800)
    registrar = Registrar(discovery.instance.runtime.store)
    assert await registrar.remove_expired(600, batch=2) == 2
    assert list(instance_health(await discovery.service(name))) == instances[2:]

    second = Discovery(settings)
    await second.start()
    try:
        await silent_since(pool, name, instances[2:], 2 * 3600)

        async def none_left() -> bool:
            return not (await second.service(name))["instances"]

        await eventually(none_left, what="both monitors removing the rest")
    finally:
        await second.stop()
    assert sorted(await deregistrations(pool, name)) == instances


# --- the compatibility rules themselves -------------------------------------------------------


def test_compatible_evolutions_are_not_flagged() -> None:
    old, new = by_type(lockers_v1()), by_type(lockers_v1_compatible())
    assert breaking_changes(old, new) == []


def test_each_kind_of_breaking_change_is_named() -> None:
    class Before(Command):
        status: str | None = None
        count: int = 1

    class Outcome(Model):
        total: int
        status: str

    class After(Command):
        status: str
        count: int

    class Widened(Model):
        total: int | None = None
        status: str | None

    old = describe(Before, _Handler(Outcome))
    new = describe(After, _Handler(Widened)).model_copy(update={"message_type": "Before"})
    changes = [c.describe() for c in breaking_changes({"Before": old}, {"Before": new})]
    assert changes == [
        "Before input: field 'status' changed type from null|string to string",
        "Before input: field 'count' became required",
        "Before input: field 'status' became required",
        "Before output: field 'total' changed type from integer to integer|null",
        "Before output: field 'status' changed type from string to null|string",
        "Before output: field 'total' is no longer always present",
    ]
    removed = breaking_changes({"Before": old}, {})
    assert [c.describe() for c in removed] == ["Before: contract removed"]


class _Handler:
    def __init__(self, result: type[Model]) -> None:
        self.result = result


def by_type(contracts: list[ContractInfo]) -> dict[str, ContractInfo]:
    return {c.message_type: c for c in contracts}


def shelves(version: str, *fields: str) -> tuple[Service, Counter[str]]:
    """A `shelves` service at `version` whose Shelve command has `fields` (all required)."""
    handled: Counter[str] = Counter()
    required: dict[str, Any] = {name: (str, ...) for name in fields}
    Shelve = create_model("Shelve", __base__=Command, **required)  # named as its message type
    service = Service("shelves", version=version)

    @service.command(Shelve)
    async def shelve(command: Command, ctx: Context) -> str:
        handled[version] += 1
        return version

    return service, handled


async def test_a_refused_version_consumes_nothing(discovery, settings, rpc) -> None:
    v1, handled_by_v1 = shelves("1.0.0", "book")
    v2, handled_by_v2 = shelves("1.1.0", "book", "room")  # a required field: breaking
    running = [v1.instance(announcing(settings)), v2.instance(announcing(settings))]
    try:
        await running[0].start()
        announcer = running[0].announcer
        assert announcer is not None
        await eventually(announcer.registered.is_set, what="v1 registered")
        await running[1].start()
        await eventually(lambda: running[1].refused is not None, what="v2 to be refused")
        for _ in range(6):
            reply = await rpc.request(
                "service.shelves.commands.Shelve", b'{"book": "dune"}', timeout=5
            )
            assert reply.ok and reply.json() == "1.0.0"
        assert handled_by_v1["1.0.0"] == 6 and handled_by_v2["1.1.0"] == 0
        health = await running[1].health()
        assert health["status"] == "refused" and health["refused"]["code"] == "CONFLICT"
    finally:
        for instance in reversed(running):
            await instance.stop()


async def test_a_refused_version_takes_none_of_the_requests_waiting_for_it(
    discovery, settings, rpc
) -> None:
    """Requests queued while no instance runs stay for a compatible one: a new instance asks
    discovery before it consumes, so a refused one takes nothing, not even at its start."""
    v1, handled_by_v1 = shelves("1.0.0", "book")
    v2, handled_by_v2 = shelves("1.1.0", "book", "room")  # a required field: breaking
    first = v1.instance(announcing(settings))
    await first.start()
    assert first.announcer is not None
    await eventually(first.announcer.registered.is_set, what="v1 registered")
    await first.stop()  # 1.0.0 stays the registered version, its callers' contract
    queue = "service.shelves.commands.Shelve"
    waiting = [
        asyncio.create_task(rpc.request(queue, b'{"book": "dune"}', timeout=30)) for _ in range(4)
    ]
    await eventually(lambda: _depth(settings, queue, 4), what="4 requests waiting in the queue")
    second = v2.instance(announcing(settings))
    try:
        await second.start()
        assert second.refused is not None and handled_by_v2 == Counter()
        assert await _depth(settings, queue, 4), "the refused version took waiting requests"
        first = v1.instance(announcing(settings))
        await first.start()
        replies = await asyncio.gather(*waiting)
        assert [r.json() for r in replies] == ["1.0.0"] * 4 and handled_by_v1["1.0.0"] == 4
    finally:
        await second.stop()
        await first.stop()


async def _depth(settings: Settings, queue: str, messages: int) -> bool:
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count == messages


async def test_banyan_contracts_pull_writes_a_services_contracts(
    discovery, start_orders, settings, tmp_path
) -> None:
    orders = await start_orders()
    await eventually(lambda: listed_healthy(discovery, orders), what="orders registered")
    out = tmp_path / "orders_contracts.py"
    args = parser().parse_args(["contracts", "pull", "orders", "--out", str(out)])
    assert await args.run(settings, args) == 0
    code = out.read_text()
    assert "class PlaceOrder(Command, permissions=['orders:place']):" in code
    assert "class OrderPlaced(Event, service='orders'):" in code
    assert "RegisterService" not in code  # internal contracts stay out
    compile(code, str(out), "exec")
