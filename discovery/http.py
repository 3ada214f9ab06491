"""Discovery's HTTP API beside `/health`: the registry as JSON (camelCase), for callers whose
bearer token holds `discovery:read` (the registry maps every operation and permission)."""

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from discovery.catalog import Catalog
from pipelines.errors import Forbidden, NoAuthHeader, PlatformError, ServiceUnavailable
from pipelines.identity import bearer_token

READ_PERMISSION = "discovery:read"


def add_routes(app: FastAPI) -> None:
    reader = [Depends(registry_reader)]
    app.add_api_route("/api/services", list_services, methods=["GET"], dependencies=reader)
    app.add_api_route("/api/services/{name}", get_service, methods=["GET"], dependencies=reader)
    app.add_api_route("/api/contracts", list_contracts, methods=["GET"], dependencies=reader)
    app.add_exception_handler(PlatformError, _error)  # type: ignore[arg-type]


def registry_reader(request: Request) -> None:
    """Refuse a caller without a verified token that holds `discovery:read`."""
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise NoAuthHeader(
            f"the registry needs 'Authorization: Bearer <token>' ({READ_PERMISSION})"
        )
    caller = request.app.state.instance.runtime.tokens.verify(token)
    if not caller.has(READ_PERMISSION):
        raise Forbidden(f"the registry requires {READ_PERMISSION}", {"required": [READ_PERMISSION]})


async def list_services(request: Request) -> Response:
    """Every service: its current and past versions, instances, health and contracts."""
    return _json(await _catalog(request).services())


async def get_service(name: str, request: Request) -> Response:
    return _json(await _catalog(request).service(name))


async def list_contracts(request: Request) -> Response:
    """Every routable contract with its schemas, permissions and service."""
    return _json(await _catalog(request).contracts())


def _catalog(request: Request) -> Catalog:
    pool = request.app.state.instance.runtime.pool
    if pool is None:
        raise ServiceUnavailable("discovery is stopping")
    return Catalog(pool)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def _error(request: Request, exc: PlatformError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status)
