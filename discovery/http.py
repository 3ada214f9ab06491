"""Discovery's HTTP API beside `/health`: the registry as JSON (camelCase)."""

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from discovery.catalog import Catalog
from pipelines.errors import PlatformError, ServiceUnavailable


def add_routes(app: FastAPI) -> None:
    app.add_api_route("/api/services", list_services, methods=["GET"])
    app.add_api_route("/api/services/{name}", get_service, methods=["GET"])
    app.add_api_route("/api/contracts", list_contracts, methods=["GET"])
    app.add_exception_handler(PlatformError, _error)  # type: ignore[arg-type]


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
