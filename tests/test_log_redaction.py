"""Secrets inside URLs never reach a log line: access tokens in a query, passwords in URLs."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from pipelines.http import HttpServer
from pipelines.logs import REDACTED, UrlSecretsFilter, configure_logging, handler

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def logged(logger: str, message: str, *args: object) -> str:
    stream = io.StringIO()
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, args, None)
    out = handler(stream, text=False)
    out.handle(record)
    return stream.getvalue()


def test_an_access_line_keeps_no_query_token() -> None:
    # as uvicorn's access logger writes it: client, request line with the query, status
    line = logged(
        "uvicorn.access", '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/ws?token={TOKEN}",
        "1.1", 101,
    )  # fmt: skip
    assert TOKEN not in line
    assert f"/ws?token={REDACTED}" in json.loads(line)["message"]


def test_a_url_keeps_no_password() -> None:
    line = logged("banyan.tracing", "exporting traces to %s", "https://bob:s3cret@jaeger:4318/v1")
    assert "s3cret" not in line and "bob" not in line
    assert json.loads(line)["message"] == f"exporting traces to https://{REDACTED}@jaeger:4318/v1"


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """The root logger as a new process has it; put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_uvicorn_writes_through_the_platform_handler_which_redacts(fresh_logging) -> None:
    configure_logging("gateway", "INFO")
    server = HttpServer(FastAPI(), "127.0.0.1", 0)  # uvicorn set its own handlers up here
    await server.start()
    await server.stop()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert logging.getLogger(name).handlers == [], name
    assert logging.getLogger("uvicorn.error").propagate
    # its access lines give way to `banyan.access`, which carries the duration and correlation
    assert not logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)
    assert any(
        isinstance(f, UrlSecretsFilter) for h in logging.getLogger().handlers for f in h.filters
    )


@pytest.mark.parametrize(("level", "chatty"), [("INFO", False), ("DEBUG", True)])
def test_third_party_chatter_is_at_warning_unless_debug(
    fresh_logging, level: str, chatty: bool
) -> None:
    configure_logging("chatter", level)
    for library in ("elastic_transport.transport", "asyncio", "urllib3.connectionpool"):
        assert logging.getLogger(library).isEnabledFor(logging.INFO) is chatty, library
    assert not logging.getLogger("aiormq.connection").isEnabledFor(logging.DEBUG)
