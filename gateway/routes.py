"""The gateway's routing table, built from the contract registry.

`POST /api/{service}/{command-in-kebab-case}` and `GET /api/{service}/{query-in-kebab-case}`;
internal contracts (platform plumbing) are never routed.
"""

import json
import re
from dataclasses import dataclass, field
from functools import cached_property

from pipelines.registry import ContractInfo

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def kebab(name: str) -> str:
    return _BOUNDARY.sub("-", name).lower()


def camel(name: str) -> str:
    return name[:1].lower() + name[1:]


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    version: str
    healthy: bool
    contracts: list[ContractInfo]
    internal: frozenset[str] = frozenset()  # message types that must not be exposed


@dataclass(frozen=True)
class Route:
    service: str
    contract: ContractInfo

    @property
    def method(self) -> str:
        return "POST" if self.contract.kind == "command" else "GET"

    @property
    def path(self) -> str:
        return f"/api/{self.service}/{kebab(self.contract.message_type)}"

    @cached_property
    def input_schema_text(self) -> str:
        """The input schema, canonical: what its compiled validator is found by."""
        return json.dumps(self.contract.input_schema, sort_keys=True)


@dataclass
class RouteTable:
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    events: dict[str, tuple[str, ContractInfo]] = field(default_factory=dict)
    health: dict[str, bool] = field(default_factory=dict)
    version: int = 0

    @classmethod
    def build(cls, services: list[ServiceEntry], version: int = 0) -> "RouteTable":
        table = cls(version=version)
        for service in services:
            table.health[service.name] = service.healthy
            for contract in service.contracts:
                if contract.message_type in service.internal:
                    continue
                if contract.kind == "event":
                    table.events[contract.message_type] = (service.name, contract)
                else:
                    route = Route(service.name, contract)
                    table.routes[(service.name, kebab(contract.message_type))] = route
        return table

    def find(self, service: str, name: str) -> Route | None:
        return self.routes.get((service, name))

    def all(self) -> list[Route]:
        return sorted(self.routes.values(), key=lambda r: r.path)
