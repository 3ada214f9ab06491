"""Counting the round trips one asyncpg connection makes to PostgreSQL."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

# the protocol calls that each send a request and wait for its answer
ROUND_TRIPS = frozenset(
    {"query", "prepare", "bind_execute", "bind_execute_many", "bind", "execute", "copy_in",
     "copy_out", "close_statement"}
)  # fmt: skip


class CountingProtocol:
    """Stands in for a connection's protocol; counts the round trips made through it."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self.round_trips = 0

    def __getattr__(self, name: str) -> Any:
        if name in ROUND_TRIPS:
            self.round_trips += 1
        return getattr(self._protocol, name)


@contextmanager
def counting(conn: asyncpg.Connection) -> Iterator[CountingProtocol]:
    """Count the round trips `conn` makes in the block."""
    real = conn._protocol
    counter = CountingProtocol(real)
    conn._protocol = counter
    try:
        yield counter
    finally:
        conn._protocol = real
