"""The contract registry's messages: how services announce themselves to discovery.

Every service instance sends `RegisterService` on start, `Heartbeat` every interval and
`DeregisterService` on a graceful stop. Discovery answers, keeps the registry, and publishes
`ContractsChanged` whenever the set of routable contracts changes (the gateway rebuilds its
routes on it) and `ServiceHealthChanged` when an instance stops or resumes heartbeating.
"""

from typing import Any, Literal

from pydantic import BaseModel

from pipelines.contracts import Command, Contract, Event, Model, Query
from pipelines.querycache import key_alias
from pipelines.upcasting import upcasts_from

DISCOVERY = "discovery"


class CacheInfo(Model):
    """How a query's results are cached, so the gateway can answer from the same cache."""

    projection: str
    event_types: list[str]
    ttl: float
    shared: bool = False  # the same answer for every caller (`Cached.shared`)
    key: str | None = None  # the payload field answers are invalidated by (`Cached.key`)


class Audience(Model):
    """Who may receive an event on the gateway's sockets. Absent: nobody (secure by default,
    also for registrations made before audiences existed)."""

    public: bool = False  # anyone, without a token; else holders of required_permissions
    owner: str | None = None  # wire name of the text field that must equal the caller's id
    admin: list[str] = []  # permissions that lift the owner rule


class ContractInfo(Model):
    message_type: str
    kind: Literal["command", "query", "event"]
    description: str = ""
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    required_permissions: list[str] = []
    is_public: bool = True  # commands, queries: no permissions needed; events: public=True
    sensitive: list[str] = []  # wire names of fields redacted in logs
    internal: bool = False
    rate_limit: int | None = None
    limit_per_address: bool = False
    has_policies: bool = False
    cache: CacheInfo | None = None
    audience: Audience | None = None  # events only
    schema_version: int = 1  # events: the version their class writes
    upcasts_from: list[int] = []  # events: the older versions it reads through upcasters


class RegisterService(Command, internal=True):
    service_name: str
    version: str
    instance_id: str
    service_description: str = ""
    contracts: list[ContractInfo]
    calls: list[str] = []  # the message types it sends (its `calls=`)


class RegistrationResult(Model):
    accepted: bool
    service_name: str
    version: str
    changed: bool = False


class Heartbeat(Command, internal=True):
    service_name: str
    instance_id: str


class HeartbeatResult(Model):
    known: bool  # False: discovery has no record of this instance, register again


class DeregisterService(Command, internal=True):
    service_name: str
    instance_id: str


class ListServices(Query, internal=True):
    """Every registered service with its instances, health and contracts: a ServiceList."""


class InstanceInfo(Model):
    instance_id: str
    version: str
    healthy: bool
    last_seen: str | None = None


class ServiceInfo(Model):
    name: str
    version: str
    healthy: bool  # at least one instance is healthy
    description: str = ""
    instances: list[InstanceInfo] = []
    contracts: list[ContractInfo] = []
    versions: list[str] = []  # every version that registered, oldest first
    calls: list[str] = []  # the message types its current version sends


class ServiceList(Model):
    services: list[ServiceInfo]


class RegisteredContract(ContractInfo):
    """A routable contract and the service (at its current version) that answers it."""

    service_name: str
    version: str


class ContractList(Model):
    contracts: list[RegisteredContract]


class GetService(Query, internal=True):
    service_name: str


class ListContracts(Query, internal=True):
    pass


# Discovery's events declare no audience: they are never delivered to clients.
class ContractsChanged(Event, service=DISCOVERY):
    service_name: str
    version: str
    message_types: list[str]


class ServiceDeregistered(Event, service=DISCOVERY):
    service_name: str
    instance_id: str


class ServiceHealthChanged(Event, service=DISCOVERY):
    service_name: str
    instance_id: str
    healthy: bool
    service_healthy: bool  # at least one instance of the service is healthy


def describe(contract: type[Contract], handler: Any = None) -> ContractInfo:
    """A contract as the registry and the gateway see it (`handler`: its dispatch.Handler)."""
    result = getattr(handler, "result", None)
    output = None
    if isinstance(result, type) and issubclass(result, BaseModel):
        output = result.model_json_schema(by_alias=True)
    return ContractInfo(
        message_type=contract.message_type(),
        kind=contract.__kind__,  # type: ignore[arg-type]
        description=contract.__description__,
        input_schema=contract.model_json_schema(by_alias=True),
        output_schema=output,
        required_permissions=list(contract.__permissions__),
        is_public=contract.is_public(),
        sensitive=sorted(contract.sensitive_fields()),
        internal=contract.__internal__,
        rate_limit=contract.__rate_limit__,
        limit_per_address=contract.__limit_per_address__,
        has_policies=bool(getattr(handler, "policies", ())),
        cache=_cache_info(handler),
        audience=_audience(contract),
        schema_version=contract.__version__,
        upcasts_from=upcasts_from(contract) if issubclass(contract, Event) else [],
    )


def _audience(contract: type[Contract]) -> Audience | None:
    if contract.__kind__ != "event" or not (contract.is_public() or contract.__permissions__):
        return None
    return Audience(
        public=contract.is_public(),
        owner=contract.owner_alias(),
        admin=list(contract.__admin__),
    )


def _cache_info(handler: Any) -> CacheInfo | None:
    cache, reads = getattr(handler, "cache", None), getattr(handler, "reads", None)
    if cache is None or reads is None:
        return None
    events = [e.message_type() for e in cache.invalidating(reads)]
    return CacheInfo(
        projection=reads.name,
        event_types=events,
        ttl=cache.ttl,
        shared=cache.shared,
        key=cache.key and key_alias(handler.contract, cache.key),
    )
