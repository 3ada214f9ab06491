"""What every event log guarantees: one suite, run against the PostgreSQL log
(tests/test_event_log.py) and the in-memory one (tests/test_memory_log.py).

A subclass named `Test...` provides a `store` fixture. Every test writes streams of its own
(random ids), so it holds on a log other tests write to as well.
"""

import uuid
from contextlib import aclosing

import pytest

from pipelines.errors import ConcurrencyError
from pipelines.eventstore import (
    CommandRecord,
    DuplicateCommand,
    DuplicateEvent,
    EventStore,
    NewEvent,
)


def new(aggregate_id: str, version: int, n: int = 0, event_type: str = "Counted") -> NewEvent:
    return NewEvent("Counter", aggregate_id, version, event_type, f'{{"n": {n}}}', {"by": "t"})


def fresh() -> str:
    return uuid.uuid4().hex


class EventLogContract:
    async def test_append_and_read_stream(self, store: EventStore) -> None:
        stream = fresh()
        last = await store.append(
            [new(stream, 1, 1), new(stream, 2, 2)], correlation_id="c-1", causation_id="m-1"
        )
        events = await store.read_stream("Counter", stream)
        assert [e.version for e in events] == [1, 2]
        assert events[-1].position == last and events[0].position == last - 1
        assert [e.data["n"] for e in events] == [1, 2]
        assert (events[0].correlation_id, events[0].causation_id) == ("c-1", "m-1")
        assert events[0].metadata == {"by": "t", "correlationId": "c-1"}
        assert events[0].event_type == "Counted" and events[0].occurred_at.tzinfo is not None

    async def test_events_read_back_as_written(self, store: EventStore) -> None:
        """Data and metadata keep their fields in the order written, one event alone or in a
        batch, from every reader."""
        stream, data = fresh(), '{"zulu": 1, "alpha": {"yankee": 2, "bravo": 3}, "mike": [4]}'
        metadata = {"service": "t", "messageType": "Count", "userId": "u-1"}
        await store.append([NewEvent("Counter", stream, 1, "Counted", data, metadata)])
        await store.append([NewEvent("Counter", stream, v, "Counted", data, metadata)
                            for v in (2, 3)])  # fmt: skip
        async with aclosing(store.pages(0, 100_000)) as pages:
            paged = [e async for page, _ in pages for e in page if e.aggregate_id == stream]
        for events in (await store.read_stream("Counter", stream), paged):
            assert [list(e.data) for e in events] == [["zulu", "alpha", "mike"]] * 3
            assert [list(e.data["alpha"]) for e in events] == [["yankee", "bravo"]] * 3
            assert [list(e.metadata) for e in events] == [list(metadata)] * 3

    async def test_each_event_keeps_the_schema_version_it_was_written_with(
        self, store: EventStore
    ) -> None:
        stream = fresh()
        written = [
            new(stream, 1),
            NewEvent("Counter", stream, 2, "Counted", "{}", {}, schema_version=2),
        ]
        await store.append(written)
        assert [e.schema_version for e in await store.read_stream("Counter", stream)] == [1, 2]

    async def test_read_stream_after_a_version(self, store: EventStore) -> None:
        stream = fresh()
        await store.append([new(stream, v) for v in (1, 2, 3)])
        assert [e.version for e in await store.read_stream("Counter", stream, 1)] == [2, 3]
        assert await store.stream_version("Counter", stream) == 3
        assert await store.stream_version("Counter", fresh()) == 0
        assert await store.read_stream("Counter", fresh()) == []

    async def test_nothing_to_append_is_no_position(self, store: EventStore) -> None:
        assert await store.append([]) is None

    async def test_version_clash_is_a_concurrency_error(self, store: EventStore) -> None:
        stream = fresh()
        await store.append([new(stream, 1), new(stream, 2)])
        with pytest.raises(ConcurrencyError, match="Expected version 1, but actual version is 2"):
            await store.append([new(stream, 2)])
        assert len(await store.read_stream("Counter", stream)) == 2

    async def test_a_batch_with_one_clash_appends_nothing(self, store: EventStore) -> None:
        taken, other = fresh(), fresh()
        await store.append([new(taken, 1)])
        with pytest.raises(ConcurrencyError) as clash:
            await store.append([new(other, 1), new(taken, 1)])
        assert (clash.value.expected, clash.value.actual) == (0, 0)  # the batch's first stream
        assert await store.read_stream("Counter", other) == []
        assert len(await store.read_stream("Counter", taken)) == 1

    async def test_an_event_id_is_appended_once(self, store: EventStore) -> None:
        first = new(fresh(), 1)
        await store.append([first])
        again = new(fresh(), 1)
        again.event_id = first.event_id
        with pytest.raises(DuplicateEvent):
            await store.append([again])
        assert await store.read_stream("Counter", again.aggregate_id) == []

    async def test_same_command_id_appends_once(self, store: EventStore) -> None:
        stream, command_id = fresh(), fresh()
        record = CommandRecord(command_id, "Count", '{"ok": true}', b"body")
        position = await store.append([new(stream, 1)], command=record)
        duplicate_stream = fresh()
        with pytest.raises(DuplicateCommand):
            await store.append([new(duplicate_stream, 1)], command=record)
        assert await store.read_stream("Counter", duplicate_stream) == []
        stored = await store.command_result(command_id)
        assert stored is not None and stored.result == {"ok": True}
        assert (stored.position, stored.fingerprint, stored.withheld) == (position, b"body", False)
        assert len(await store.read_stream("Counter", stream)) == 1

    async def test_a_command_without_events_is_recorded(self, store: EventStore) -> None:
        command_id = fresh()
        assert await store.append([], command=CommandRecord(command_id, "Ask", "[1]")) is None
        stored = await store.command_result(command_id)
        assert stored is not None and (stored.result, stored.position) == ([1], None)
        assert await store.command_result(fresh()) is None

    async def test_a_result_holding_secrets_is_withheld(self, store: EventStore) -> None:
        command_id = fresh()
        await store.append([new(fresh(), 1)], command=CommandRecord(command_id, "Sign", None))
        stored = await store.command_result(command_id)
        assert stored is not None and stored.withheld and stored.result is None

    async def test_read_all_in_position_order_by_type(self, store: EventStore) -> None:
        wanted, other = f"Counted{fresh()[:8]}", f"Other{fresh()[:8]}"
        start = await store.head_position()
        stream = fresh()
        await store.append([new(stream, 1, 1, wanted), new(stream, 2, 2, other)])
        await store.append([new(stream, 3, 3, wanted)])
        everything = await store.read_all(start, 1000)
        positions = [e.position for e in everything]
        assert positions == sorted(set(positions)) and all(p > start for p in positions)
        assert [e.data["n"] for e in everything if e.aggregate_id == stream] == [1, 2, 3]
        typed = await store.read_all(start, 1000, [wanted])
        assert [e.data["n"] for e in typed] == [1, 3]

    async def test_a_page_says_how_far_the_reader_got(self, store: EventStore) -> None:
        stream = fresh()
        start = await store.head_position()
        await store.append([new(stream, v) for v in (1, 2, 3)])
        head = await store.head_position()
        assert head >= start + 3
        page, covered = await store.read_page(start, 2)
        assert len(page) == 2 and covered == page[-1].position
        rest, covered = await store.read_page(covered, 1000)
        assert covered == head and (not rest or rest[-1].position == head)
        none, covered = await store.read_page(head, 1000, [f"Never{fresh()}"])
        assert none == [] and covered == head
        assert await store.readable_bound() == head + 1

    async def test_pages_read_the_log_as_of_their_start(self, store: EventStore) -> None:
        stream, wanted = fresh(), f"Counted{fresh()[:8]}"
        start = await store.head_position()
        await store.append([new(stream, v, v, wanted if v % 2 else "Other") for v in range(1, 6)])
        head = await store.head_position()
        pages = []
        async for page, covered in store.pages(start, 2):
            pages.append(([e.data["n"] for e in page], covered))
            if len(pages) == 1:  # appended after the start: not in these pages
                await store.append([new(stream, 6, 6)])
        assert pages[:2] == [([1, 2], start + 2), ([3, 4], start + 4)]
        assert pages[2:] == [([5], head)]
        typed = [page async for page in store.pages(start, 2, [wanted])]
        assert [[e.data["n"] for e in events] for events, _ in typed] == [[1, 3], [5]]
        assert [covered for _, covered in typed][1] == head + 1  # the bound moved on

    async def test_pages_end_with_a_short_page_even_when_it_is_empty(
        self, store: EventStore
    ) -> None:
        start = await store.head_position()
        await store.append([new(fresh(), v) for v in (1, 2)])
        head = await store.head_position()
        pages = [(len(page), covered) async for page, covered in store.pages(start, 2)]
        assert pages == [(2, head), (0, head)]
        assert [p async for p in store.pages(head + 5, 10)] == [([], head + 5)]
        with pytest.raises(ValueError, match="at least one event"):
            await anext(store.pages(start, 0))

    async def test_pages_stopped_early_leave_the_log_readable(self, store: EventStore) -> None:
        start = await store.head_position()
        await store.append([new(fresh(), v) for v in range(1, 5)])
        for _ in range(30):  # more than any pool holds
            async with aclosing(store.pages(start, 1)) as pages:
                async for page, _ in pages:
                    assert len(page) == 1
                    break
        assert len(await store.read_all(start, 10)) == 4

    async def test_a_snapshot_is_read_back_by_its_shape(self, store: EventStore) -> None:
        stream = fresh()
        await store.save_snapshot("Counter", stream, 5, '{"n": 5}', "shape-a")
        assert await store.load_snapshot("Counter", stream, "shape-a") == (5, {"n": 5})
        assert await store.load_snapshot("Counter", stream, "shape-b") is None
        assert await store.load_snapshot("Counter", fresh(), "shape-a") is None

    async def test_the_newest_snapshot_is_kept(self, store: EventStore) -> None:
        stream = fresh()
        await store.save_snapshot("Counter", stream, 10, '{"n": 10}', "shape-a")
        await store.save_snapshot("Counter", stream, 5, '{"n": 5}', "shape-a")
        assert await store.load_snapshot("Counter", stream, "shape-a") == (10, {"n": 10})

    async def test_each_shape_keeps_its_own_snapshot(self, store: EventStore) -> None:
        stream = fresh()  # two releases side by side, each folding its own way
        await store.save_snapshot("Counter", stream, 10, '{"n": 10}', "shape-a")
        await store.save_snapshot("Counter", stream, 5, '{"m": 5}', "shape-b")
        assert await store.load_snapshot("Counter", stream, "shape-b") == (5, {"m": 5})
        assert await store.load_snapshot("Counter", stream, "shape-a") == (10, {"n": 10})
