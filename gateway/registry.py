"""Where the gateway learns the contracts it routes."""

from collections.abc import Sequence

from gateway.routes import ServiceEntry
from gateway.state import RegistrySource
from pipelines.registry import DISCOVERY, ListServices, ServiceList
from pipelines.rpc import RpcClient
from pipelines.service import Service

REGISTRY_TIMEOUT = 5.0


def from_services(services: Sequence[Service]) -> RegistrySource:
    """A fixed registry built from service declarations (tests, single-process setups)."""

    async def load(_rpc: RpcClient) -> list[ServiceEntry]:
        return [
            ServiceEntry(
                s.name,
                s.version,
                True,
                (registration := s.registration("static")).contracts,
                frozenset(c.message_type for c in registration.contracts if c.internal),
            )
            for s in services
        ]

    return load


async def from_discovery(rpc: RpcClient) -> list[ServiceEntry]:
    """The registry as discovery holds it (`ListServices` over the bus)."""
    reply = await rpc.send(DISCOVERY, ListServices(), timeout=REGISTRY_TIMEOUT)
    listing = ServiceList.model_validate(reply.result())
    return [
        ServiceEntry(
            s.name,
            s.version,
            s.healthy,
            s.contracts,
            frozenset(c.message_type for c in s.contracts if c.internal),
        )
        for s in listing.services
    ]
