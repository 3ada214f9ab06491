"""A small HTTP server beside a service's consumers: `/health` and the service's own routes.

Several worker processes of one service share the port (SO_REUSEPORT); the kernel spreads
connections between them.
"""

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def proxy_options(forwarded_allow_ips: str) -> dict[str, Any]:
    """uvicorn's options: believe X-Forwarded-For only from these proxies (none if empty).

    uvicorn's own default believes it from 127.0.0.1, where any local process or tunnel could
    then choose the address that rate limits and the sign-in throttle count against.
    """
    return {"proxy_headers": bool(forwarded_allow_ips), "forwarded_allow_ips": forwarded_allow_ips}


def proxy_arguments(forwarded_allow_ips: str) -> list[str]:
    """The same as `uvicorn` command-line arguments."""
    if not forwarded_allow_ips:
        return ["--no-proxy-headers"]
    return ["--proxy-headers", f"--forwarded-allow-ips={forwarded_allow_ips}"]


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int, forwarded_allow_ips: str = "") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.forwarded_allow_ips = forwarded_allow_ips
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,  # its lines go through the platform's handler, as JSON
            lifespan="off",
            access_log=False,
            **proxy_options(self.forwarded_allow_ips),
        )
        self._server = uvicorn.Server(config)
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises why it could not start
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
