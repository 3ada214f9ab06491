"""What the registry shows: services with their versions, instances, health and routable
contracts. Read from PostgreSQL in one snapshot, through the Redis cache when it is there."""

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from discovery.cache import current_cache
from discovery.store import Database, connection
from pipelines.errors import NotFound
from pipelines.registry import (
    ContractInfo,
    ContractList,
    InstanceInfo,
    RegisteredContract,
    ServiceInfo,
    ServiceList,
)

CONTRACTS_TTL = 300.0  # the contract list shows no heartbeats: only a change makes it stale

SERVICES_SQL = (
    "SELECT name, description, current_version, calls FROM discovery_services "
    "WHERE $1::text IS NULL OR name = $1 ORDER BY name"
)
VERSIONS_SQL = (
    "SELECT service_name, version FROM discovery_versions "
    "WHERE $1::text IS NULL OR service_name = $1 ORDER BY registered_at, version"
)
INSTANCES_SQL = (
    "SELECT service_name, instance_id, version, healthy, last_heartbeat FROM discovery_instances "
    "WHERE $1::text IS NULL OR service_name = $1 ORDER BY registered_at, instance_id"
)
CONTRACTS_SQL = (
    "SELECT service_name, version, info FROM discovery_contracts "
    "WHERE current AND ($1::text IS NULL OR service_name = $1) ORDER BY service_name, message_type"
)


class Catalog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def services(self) -> bytes:
        """A ServiceList, as JSON."""
        body = await self._view("ListServices", "", None, self._service_list)
        assert body is not None
        return body

    async def service(self, name: str) -> bytes:
        """One ServiceInfo, as JSON; NOT_FOUND if it never registered."""
        body = await self._view("GetService", name, None, lambda: self._one_service(name))
        if body is None:
            raise NotFound(f"service {name!r} is not registered", {"service": name})
        return body

    async def contracts(self) -> bytes:
        """A ContractList of every routable contract, as JSON."""
        body = await self._view("ListContracts", "", CONTRACTS_TTL, self._contract_list)
        assert body is not None
        return body

    async def _view(
        self,
        view: str,
        argument: str,
        ttl: float | None,
        load: Callable[[], Awaitable[bytes | None]],
    ) -> bytes | None:
        cache = current_cache()
        if cache is None:
            return await load()
        return await cache.read(view, argument, ttl or cache.ttl, load)

    async def _service_list(self) -> bytes:
        return ServiceList(services=await self._load(None)).model_dump_json().encode()

    async def _one_service(self, name: str) -> bytes | None:
        found = await self._load(name)
        return found[0].model_dump_json().encode() if found else None

    async def _contract_list(self) -> bytes:
        rows = await self.db.fetch(CONTRACTS_SQL, None)
        contracts = [
            RegisteredContract.model_validate(
                {**row["info"], "serviceName": row["service_name"], "version": row["version"]}
            )
            for row in rows
        ]
        return ContractList(contracts=contracts).model_dump_json().encode()

    async def _load(self, name: str | None) -> list[ServiceInfo]:
        async with (
            connection(self.db) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            services = await conn.fetch(SERVICES_SQL, name)
            versions = await conn.fetch(VERSIONS_SQL, name)
            instances = await conn.fetch(INSTANCES_SQL, name)
            contracts = await conn.fetch(CONTRACTS_SQL, name)
        versions_of, instances_of = _by_service(versions), _by_service(instances)
        contracts_of = _by_service(contracts)
        return [
            _service(
                row,
                versions_of[row["name"]],
                instances_of[row["name"]],
                contracts_of[row["name"]],
            )
            for row in services
        ]


def _by_service(rows: list[Any]) -> defaultdict[str, list[Any]]:
    grouped: defaultdict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row["service_name"]].append(row)
    return grouped


def _service(
    row: Any, versions: list[Any], instances: list[Any], contracts: list[Any]
) -> ServiceInfo:
    listed = [
        InstanceInfo(
            instance_id=i["instance_id"],
            version=i["version"],
            healthy=i["healthy"],
            last_seen=i["last_heartbeat"].isoformat(),
        )
        for i in instances
    ]
    return ServiceInfo(
        name=row["name"],
        version=row["current_version"],
        healthy=any(i.healthy for i in listed),
        description=row["description"],
        instances=listed,
        contracts=[ContractInfo.model_validate(c["info"]) for c in contracts],
        versions=[v["version"] for v in versions],
        calls=row["calls"],
    )
