"""The discovery service: the contract registry and health monitor, on the SDK like any other.

Commands and queries are thin: changes go to the Registrar, reads to the Catalog.
"""

from pathlib import Path

from discovery.cache import keep_cache
from discovery.catalog import Catalog
from discovery.events import Cause
from discovery.health import monitor_health
from discovery.http import add_routes
from discovery.registrar import Registrar
from pipelines import Context, Service
from pipelines.registry import (
    DISCOVERY,
    ContractList,
    ContractsChanged,
    DeregisterService,
    GetService,
    Heartbeat,
    HeartbeatResult,
    ListContracts,
    ListServices,
    RegisterService,
    RegistrationResult,
    ServiceDeregistered,
    ServiceHealthChanged,
    ServiceInfo,
    ServiceList,
)

service = Service(
    DISCOVERY,
    version="1.0.0",
    description="Contract registry and health monitor",
    http_port=3002,
    migrations=Path(__file__).parent / "migrations",
)
service.publishes(ContractsChanged, ServiceDeregistered, ServiceHealthChanged)
service.background(keep_cache)
service.background(monitor_health)
add_routes(service.http)


@service.command(RegisterService, result=RegistrationResult)
async def register(message: RegisterService, ctx: Context) -> RegistrationResult:
    return await Registrar(ctx.store).register(message, Cause.of(ctx))


@service.command(Heartbeat, result=HeartbeatResult)
async def heartbeat(message: Heartbeat, ctx: Context) -> HeartbeatResult:
    return await Registrar(ctx.store).heartbeat(message, Cause.of(ctx))


@service.command(DeregisterService, result=HeartbeatResult)
async def deregister(message: DeregisterService, ctx: Context) -> HeartbeatResult:
    """Known is False when discovery had no record of the instance."""
    return await Registrar(ctx.store).deregister(message, Cause.of(ctx))


@service.query(ListServices, result=ServiceList)
async def list_services(query: ListServices, ctx: Context) -> ServiceList:
    return ServiceList.model_validate_json(await Catalog(ctx.store.pool).services())


@service.query(GetService, result=ServiceInfo)
async def get_service(query: GetService, ctx: Context) -> ServiceInfo:
    return ServiceInfo.model_validate_json(
        await Catalog(ctx.store.pool).service(query.service_name)
    )


@service.query(ListContracts, result=ContractList)
async def list_contracts(query: ListContracts, ctx: Context) -> ContractList:
    return ContractList.model_validate_json(await Catalog(ctx.store.pool).contracts())
