"""HTTP conventions every endpoint follows: HEAD answers as GET does, without the body."""

from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGet:
    """Runs a HEAD request as a GET; the server (uvicorn) sends the headers only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}  # a copy: the server's own scope still says HEAD
        await self.app(scope, receive, send)
