"""The load soak's memory verdict: growth beyond 2% flags a process, unless its RSS levels off."""

import asyncio
import contextlib
import math

import pytest

from bench.load import GROWTH_LIMIT, Client, growth, request

pytestmark = pytest.mark.unit

WARMUP = 360.0  # seconds, as a 30-minute soak counts them
SECONDS = [float(t) for t in range(0, 1800, 5)]


def test_memory_that_levels_off_is_fitted_and_passes() -> None:
    samples = [(t, 100 + 6 * (1 - math.exp(-t / 420))) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.worst > GROWTH_LIMIT  # grew more than 2% after warm-up
    assert judged.plateau is not None
    assert judged.plateau.mb == pytest.approx(106, abs=0.05)
    assert judged.to_come < 0.001
    assert not judged.flagged


def test_memory_that_keeps_growing_is_flagged() -> None:
    samples = [(t, 100 + t / 60 * 0.5) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.plateau is None
    assert judged.flagged


def test_memory_that_levels_off_too_late_is_flagged() -> None:
    """Tau beyond a third of the soak: the curve is still rising at the end."""
    samples = [(t, 100 + 30 * (1 - math.exp(-t / 3000))) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.plateau is None
    assert judged.flagged


def test_flat_memory_passes_without_a_plateau() -> None:
    samples = [(t, 100 + 0.1 * math.sin(t)) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.worst <= GROWTH_LIMIT
    assert not judged.flagged


async def _serve_keep_alive(accepted: list[int]) -> asyncio.Server:
    """A server answering every request 204 on the connection it came on (keep-alive)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError):  # until the client closes
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize(("idle_expiry", "connections"), [(60.0, 1), (0.0, 2)])
async def test_the_load_client_reuses_idle_connections_until_they_expire(
    idle_expiry: float, connections: int
) -> None:
    """A connection idle past its expiry is closed, not raced against the server's own
    keep-alive timeout."""
    accepted: list[int] = []
    server = await _serve_keep_alive(accepted)
    client = Client(server.sockets[0].getsockname()[1], idle_expiry=idle_expiry)
    try:
        for _ in range(2):
            assert (await client.send(request("GET", "/health", "token"))).status == 204
    finally:
        client.close()
        server.close()
    assert len(accepted) == connections
