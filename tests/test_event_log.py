"""The PostgreSQL event log: its contract, and gap-free reading while appends are in flight."""

import asyncio
import uuid
from contextlib import aclosing

import asyncpg
import pytest

from pipelines.eventstore import EventStore, NewEvent
from pipelines.instance import ServiceInstance
from tests.eventlog_contract import EventLogContract, new


@pytest.fixture(scope="module")
async def store(orders: ServiceInstance) -> EventStore:
    assert orders.runtime.store is not None  # a started instance has its log
    return orders.runtime.store


class TestPostgresEventLog(EventLogContract):
    """The log's contract (tests/eventlog_contract.py), on PostgreSQL."""


async def test_concurrent_writers_never_make_a_reader_skip(store: EventStore) -> None:
    """Writers (of single events and of batches) commit out of position order; a reader
    following the log must see every event exactly once, in increasing position order."""
    writers, per_writer = 16, 60
    run = uuid.uuid4().hex
    start = await store.head_position()
    written: set[str] = set()
    done = asyncio.Event()

    async def writer(w: int) -> None:
        version = 0
        for i in range(per_writer):
            size = 1 + (w * i) % 3
            events = [new(f"{run}-{w}", version + k + 1, i) for k in range(size)]
            version += size
            async with store.pool.acquire() as conn, conn.transaction():
                await store.append(events, conn=conn)
                # hold the transaction open a little, so commits interleave with later positions
                await asyncio.sleep(0.001 * ((w + i) % 3))
            written.update(str(e.event_id) for e in events)

    async def reader() -> list[str]:
        seen: list[str] = []
        position = start
        while True:
            finished = done.is_set()
            batch = await store.read_all(position, 200)
            for event in batch:
                assert event.position > position, "positions must only increase"
                position = event.position
                if event.aggregate_id.startswith(run):
                    seen.append(str(event.event_id))
            if finished and not batch:
                return seen
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    seen = await asyncio.wait_for(reading, 30)
    assert len(seen) == len(set(seen)), "an event was read twice"
    assert set(seen) == written, f"reader missed {len(written - set(seen))} events"


async def test_an_unrelated_long_transaction_does_not_hold_readers_back(store: EventStore) -> None:
    async with store.pool.acquire() as idle, idle.transaction():
        await idle.fetchval("SELECT pg_current_xact_id()")  # an open transaction with an id
        stream = uuid.uuid4().hex
        position = await store.append([new(stream, 1)])
        assert position is not None
        events = await store.read_all(position - 1, 10)
        assert [e.aggregate_id for e in events][:1] == [stream]


async def test_a_reader_stops_below_an_append_in_flight(store: EventStore) -> None:
    async with store.pool.acquire() as writer, writer.transaction():
        in_flight = await store.append([new(uuid.uuid4().hex, 1)], conn=writer)
        assert in_flight is not None
        later = await store.append([new(uuid.uuid4().hex, 1)])  # commits first
        assert later is not None and later > in_flight
        assert await store.readable_bound() == in_flight
        assert all(e.position < in_flight for e in await store.read_all(in_flight - 5, 100))
    assert [e.position for e in await store.read_all(in_flight - 1, 2)] == [in_flight, later]


async def test_pages_stop_below_an_append_in_flight(store: EventStore) -> None:
    start = await store.head_position()
    async with store.pool.acquire() as writer, writer.transaction():
        in_flight = await store.append([new(uuid.uuid4().hex, 1)], conn=writer)
        later = await store.append([new(uuid.uuid4().hex, 1)])
        assert in_flight is not None and later is not None and later > in_flight
        pages = [page async for page in store.pages(start, 1)]
    assert all(e.position < in_flight for events, _ in pages for e in events)
    assert pages[-1] == ([], in_flight - 1)
    read = [e.position async for events, _ in store.pages(in_flight - 1, 1) for e in events]
    assert read[:2] == [in_flight, later]


async def test_pages_ask_for_the_next_page_while_the_caller_uses_one(store: EventStore) -> None:
    """The server reads page 2 while the caller still holds page 1."""
    start = await store.head_position()
    await store.append([new(uuid.uuid4().hex, v) for v in (1, 2, 3)])
    answered: list[str] = []
    second_read = asyncio.Event()

    def logged(query: asyncpg.connection.LoggedQuery) -> None:
        answered.append(query.query)
        if len(answered) == 3:  # the bound, page 1, page 2
            second_read.set()

    async with store.pool.acquire() as conn:
        conn.add_query_logger(logged)
        async with aclosing(store.pages(start, 1, conn=conn)) as pages:
            async for _ in pages:
                await asyncio.wait_for(second_read.wait(), 5)  # page 1 is still ours
                break
        assert await conn.fetchval("SELECT 1") == 1  # the page asked for ahead has ended
    assert "readable_bound" in answered[0] and "FROM events" in answered[2]


async def test_a_reader_cancelled_mid_page_frees_its_connection(store: EventStore) -> None:
    start = await store.head_position()
    await store.append([new(uuid.uuid4().hex, v) for v in range(1, 6)])
    holding = asyncio.Event()

    async def slow_reader() -> None:
        async for _ in store.pages(start, 1):
            holding.set()
            await asyncio.Event().wait()  # a caller that never finishes its page

    for _ in range(store.pool.get_max_size() + 2):
        reader = asyncio.create_task(slow_reader())
        await asyncio.wait_for(holding.wait(), 5)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        holding.clear()
    assert len(await asyncio.wait_for(store.read_all(start, 10), 5)) == 5


async def pages_until_caught_up(
    store: EventStore, conn: object, position: int, limit: int
) -> tuple[list[int], int]:
    """Read from `position` in pages of `limit` until a page comes back short: the positions
    read, and how many pages that took."""
    positions: list[int] = []
    pages = 0
    while True:
        page, covered = await store.read_page(position, limit, conn=conn)
        pages += 1
        positions += [e.position for e in page]
        position = covered
        if len(page) < limit:
            return positions, pages


async def test_a_reader_catching_up_takes_the_readable_bound_once_not_per_page(
    store: EventStore,
) -> None:
    """Below a bound it has taken, every position is settled for good: a reader catching up
    reads page after page below it with a plain SELECT, and takes a fresh bound only when it
    has read everything below the one it has."""
    start = await store.head_position()
    stream = uuid.uuid4().hex
    await store.append([new(stream, v, v) for v in range(1, 31)])
    statements: list[str] = []
    async with store.pool.acquire() as conn:
        conn.add_query_logger(lambda query: statements.append(query.query))
        positions, pages = await pages_until_caught_up(store, conn, start, 5)
    assert pages >= 6 and positions == sorted(set(positions)) and len(positions) >= 30
    bounds_taken = [s for s in statements if "read_log" in s or "readable_bound" in s]
    assert len(bounds_taken) <= 2, f"{len(bounds_taken)} bounds taken for {pages} pages"


async def test_a_short_page_below_a_known_bound_reads_on_to_a_fresh_one(
    store: EventStore,
) -> None:
    """A short page means "caught up with the log as of now": events committed after the
    reader's last bound are in it, never left for a NOTIFY that already went by."""
    start = await store.head_position()
    stream = uuid.uuid4().hex
    await store.append([new(stream, v) for v in range(1, 5)])
    _, covered = await store.read_page(start, 2)  # takes a bound above the 4 events
    later = await store.append([new(stream, 5)])
    rest, covered = await store.read_page(covered, 1000)
    assert [e.version for e in rest if e.aggregate_id == stream] == [3, 4, 5]
    assert covered >= (later or 0)


async def test_an_event_holding_the_nul_character_is_refused(store: EventStore) -> None:
    """The log keeps events as written (json), yet refuses what projections' documents
    (jsonb) could not hold: the append adds nothing."""
    stream = uuid.uuid4().hex
    for data, metadata in (('{"n": "a\\u0000b"}', {}), ("{}", {"by": "a\x00b"})):
        with pytest.raises(asyncpg.CheckViolationError, match="events_without_nul"):
            await store.append([NewEvent("Counter", stream, 1, "Counted", data, metadata)])
    assert await store.read_stream("Counter", stream) == []
