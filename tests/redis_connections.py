"""Counting the connections a redis-py client's pool opens (the pipe's included)."""

import pytest
import redis.asyncio as aioredis


def count_opened(client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The connections `client`'s pool opens from now on, as they are opened."""
    pool = client.connection_pool
    opened: list[object] = []
    make = pool.make_connection

    def counted() -> object:
        opened.append(connection := make())
        return connection

    monkeypatch.setattr(pool, "make_connection", counted)
    return opened
