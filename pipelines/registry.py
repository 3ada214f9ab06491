"""The contract registry's messages: how services announce themselves to discovery.

Every service instance sends `RegisterService` on start, `Heartbeat` every interval and
`DeregisterService` on a graceful stop. Discovery answers, keeps the registry, and publishes
`ContractsChanged` whenever the set of routable contracts changes (the gateway rebuilds its
routes on it) and `ServiceHealthChanged` when an instance stops or resumes heartbeating.
"""

from typing import Any, Literal

from pydantic import BaseModel

from pipelines.contracts import Command, Contract, Event, Model, Query

DISCOVERY = "discovery"


class ContractInfo(Model):
    message_type: str
    kind: Literal["command", "query", "event"]
    description: str = ""
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    required_permissions: list[str] = []
    is_public: bool = True
    sensitive_fields: list[str] = []
    cached: bool = False


class RegisterService(Command, internal=True):
    service_name: str
    version: str
    instance_id: str
    service_description: str = ""
    contracts: list[ContractInfo]


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
    pass


class GetService(Query, internal=True):
    service_name: str


class ListContracts(Query, internal=True):
    pass


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


def describe(contract: type[Contract], result: type[Any] | None, cached: bool) -> ContractInfo:
    output = None
    if isinstance(result, type) and issubclass(result, BaseModel):
        output = result.model_json_schema(by_alias=True)
    return ContractInfo(
        message_type=contract.message_type(),
        kind=contract.kind,  # type: ignore[arg-type]
        description=contract.description,
        input_schema=contract.model_json_schema(by_alias=True),
        output_schema=output,
        required_permissions=list(contract.permissions),
        is_public=contract.is_public(),
        sensitive_fields=sorted(contract.sensitive_fields()),
        cached=cached,
    )
