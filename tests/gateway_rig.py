"""A gateway over real HTTP for the services a test names, torn down with the test."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.registry import from_services
from pipelines import Service
from pipelines.http import HttpServer
from pipelines.settings import Settings

Served = tuple[FastAPI, httpx.AsyncClient]


@asynccontextmanager
async def running_gateway(settings: Settings, services: Sequence[Service]) -> AsyncIterator[Served]:
    """The gateway's app, and a client of it on a free port."""
    app = create_app(settings, from_services(list(services)))
    async with serving(app) as client:
        yield app, client


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway's app started and served on a free port, and a client of it."""
    await app.state.gateway.start()
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    try:
        yield client
    finally:
        await client.aclose()
        await server.stop()
        await app.state.gateway.stop()
