"""The platform's connections read and write `timestamptz` as ISO text (cheaper to decode than
asyncpg's binary format), with the very values asyncpg's own binary codec gives and takes."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from pipelines.database import connect
from pipelines.settings import Settings

SENT: list[Any] = [
    datetime(2026, 12, 6, 20, 53, 55, 123456, tzinfo=UTC),
    datetime(2026, 12, 6, 20, 53, 55, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7))),
    datetime(2026, 12, 6, 20, 53, 55, 120000),  # naive: local time, as asyncpg takes it
    datetime(999, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # infinity, as asyncpg sends it
    datetime(1, 1, 1, tzinfo=UTC),  # and -infinity
    date(2026, 12, 6),  # midnight, local time
    datetime.max,  # asyncpg's infinity
    datetime.min,  # and -infinity
]
LITERALS = [
    "'2026-12-06 20:53:55.5+02'",
    "'0001-01-01 00:00:00+00'",
    "'infinity'",
    "'-infinity'",
    "now()",
]


@pytest.fixture
async def connections(settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    platform = await connect(settings)
    plain = await asyncpg.connect(settings.database_url)  # asyncpg's binary codec
    try:
        yield platform, plain
    finally:
        await platform.close()
        await plain.close()


async def test_values_sent_are_stored_and_read_as_with_asyncpgs_codec(
    connections: tuple[Any, Any],
) -> None:
    platform, plain = connections
    for value in SENT:
        stored = await platform.fetchval("SELECT $1::timestamptz::text", value)
        assert stored == await plain.fetchval("SELECT $1::timestamptz::text", value), value
        read = await platform.fetchval("SELECT $1::timestamptz", value)
        assert read == await plain.fetchval("SELECT $1::timestamptz", value), value


async def test_values_read_are_asyncpgs_in_utc(connections: tuple[Any, Any]) -> None:
    platform, plain = connections
    for literal in LITERALS:
        sql = f"SELECT {literal}::timestamptz"
        async with platform.transaction(), plain.transaction():  # now() as in one instant
            ours, theirs = await platform.fetchval(sql), await plain.fetchval(sql)
        if literal != "now()":
            assert ours == theirs, literal
        assert ours.tzinfo == theirs.tzinfo, literal


async def test_what_is_not_a_date_is_refused(connections: tuple[Any, Any]) -> None:
    platform, _ = connections
    with pytest.raises(asyncpg.DataError, match="expected a datetime"):
        await platform.fetchval("SELECT $1::timestamptz", "2026-12-06")
