"""The in-memory event log of the test kit keeps the log's contract (tests/eventlog_contract.py)."""

import pytest

from pipelines.errors import ConcurrencyError
from pipelines.memory_log import MemoryEventStore
from tests.eventlog_contract import EventLogContract, fresh, new

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def store() -> MemoryEventStore:
    return MemoryEventStore()


class TestMemoryEventLog(EventLogContract):
    """The same suite as TestPostgresEventLog."""


async def test_another_writer_can_win_the_next_append(store: MemoryEventStore) -> None:
    stream = fresh()
    store.before_next_append([new(stream, 1, 7)])
    with pytest.raises(ConcurrencyError, match="Expected version 0, but actual version is 1"):
        await store.append([new(stream, 1, 1)])
    assert [e.data["n"] for e in await store.read_stream("Counter", stream)] == [7]


async def test_old_records_expire(store: MemoryEventStore) -> None:
    assert store.record_processed("sub", "e-1") and not store.record_processed("sub", "e-1")
    assert await store.expire_processed_events(0) >= 1
    assert store.record_processed("sub", "e-1")
