"""The event log in memory, for unit tests: what the PostgreSQL log guarantees, without a server.

Appends are atomic and visible at once (there is no transaction in flight to wait for), so the
readable bound is always just past the newest event. It passes the log's contract tests
(tests/eventlog_contract.py), run against both logs.
"""

import json
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from pipelines.errors import ConcurrencyError
from pipelines.eventstore import (
    CommandRecord,
    DuplicateCommand,
    DuplicateEvent,
    EventStore,
    NewEvent,
    Page,
    RecordedEvent,
    Runner,
    StoredResult,
    stored_metadata,
)

K = TypeVar("K")
StreamKey = tuple[str, str]  # (aggregate type, aggregate id)


class MemoryEventStore(EventStore):
    """The log as a list; also the home of the read models a test kit folds (`read_models`)."""

    def __init__(self) -> None:
        self.notifier = None
        self.events: list[RecordedEvent] = []
        self.read_models: dict[str, Any] = {}  # projection name -> its in-memory documents
        self._versions: dict[StreamKey, set[int]] = {}
        self._event_ids: set[uuid.UUID] = set()
        self._results: dict[str, StoredResult] = {}
        self._result_times: dict[str, float] = {}
        self._processed: dict[tuple[str, str], float] = {}
        self._snapshots: dict[tuple[str, str, str], tuple[int, dict[str, Any]]] = {}
        self._other_writers: list[list[NewEvent]] = []

    def before_next_append(self, events: Sequence[NewEvent]) -> None:
        """Have another writer append `events` just before the next append: a race it won."""
        self._other_writers.append(list(events))

    def races_not_run(self) -> list[list[NewEvent]]:
        """Forget the other writers' appends that no append came to set off; returns them."""
        pending, self._other_writers = self._other_writers, []
        return pending

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        command: CommandRecord | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> int | None:
        while self._other_writers:
            self._add(self._other_writers.pop(0), None, None)
        if not events and command is None:
            return None
        if command is not None and command.command_id in self._results:
            raise DuplicateCommand(command.command_id)
        position = self._add(events, correlation_id, causation_id)
        if command is not None:
            result = json.loads(command.result) if command.result is not None else None
            stored = StoredResult(result, position, command.fingerprint, command.result is None)
            self._results[command.command_id] = stored
            self._result_times[command.command_id] = time.monotonic()
        return position

    def _add(
        self, events: Sequence[NewEvent], correlation_id: str | None, causation_id: str | None
    ) -> int | None:
        """Check the whole batch, then add it: all of it or none."""
        ids = [e.event_id for e in events]
        if len(set(ids)) < len(ids) or self._event_ids.intersection(ids):
            raise DuplicateEvent("an event id is taken")
        keys = [(e.aggregate_type, e.aggregate_id, e.version) for e in events]
        if len(set(keys)) < len(keys) or any(
            version in self._versions.get((t, i), ()) for t, i, version in keys
        ):
            first = min(events, key=lambda e: e.version)
            actual = max(self._versions.get((first.aggregate_type, first.aggregate_id), {0}))
            stream = f"{first.aggregate_type}/{first.aggregate_id}"
            raise ConcurrencyError(stream, first.version - 1, actual)
        now = datetime.now(UTC)
        for event in events:
            self._versions.setdefault((event.aggregate_type, event.aggregate_id), set()).add(
                event.version
            )
            self._event_ids.add(event.event_id)
            self.events.append(
                RecordedEvent(
                    position=len(self.events) + 1,
                    event_id=event.event_id,
                    aggregate_type=event.aggregate_type,
                    aggregate_id=event.aggregate_id,
                    version=event.version,
                    event_type=event.event_type,
                    data=json.loads(event.data),
                    metadata=stored_metadata(event.metadata, correlation_id),
                    occurred_at=now,
                    correlation_id=correlation_id,
                    causation_id=causation_id,
                    schema_version=event.schema_version,
                )
            )
        return len(self.events) if events else None

    def record_processed(self, subscriber: str, event_id: str) -> bool:
        """Note that `subscriber` handled the event; False if it had already."""
        if (subscriber, event_id) in self._processed:
            return False
        self._processed[(subscriber, event_id)] = time.monotonic()
        return True

    async def stream_version(self, aggregate_type: str, aggregate_id: str) -> int:
        return max(self._versions.get((aggregate_type, aggregate_id), {0}))

    async def read_stream(
        self, aggregate_type: str, aggregate_id: str, after_version: int = 0
    ) -> list[RecordedEvent]:
        found = [
            e
            for e in self.events
            if (e.aggregate_type, e.aggregate_id) == (aggregate_type, aggregate_id)
            and e.version > after_version
        ]
        return sorted(found, key=lambda e: e.version)

    async def readable_bound(self, conn: Runner | None = None) -> int:
        return len(self.events) + 1

    async def oldest_append_seconds(self) -> float:
        return 0.0

    async def read_page(
        self,
        after_position: int,
        limit: int,
        event_types: Sequence[str] | None = None,
        conn: Runner | None = None,
    ) -> tuple[list[RecordedEvent], int]:
        found = self._matching(after_position, len(self.events), event_types)[:limit]
        if len(found) == limit:
            return found, found[-1].position
        return found, max(len(self.events), after_position)

    async def _pages(
        self,
        after_position: int,
        page_size: int,
        types: list[str] | None,
        conn: asyncpg.Connection | None,
    ) -> AsyncGenerator[Page, None]:
        bound = len(self.events)
        found = self._matching(after_position, bound, types)
        for start in range(0, len(found) + 1, page_size):
            page = found[start : start + page_size]
            yield page, page[-1].position if len(page) == page_size else max(bound, after_position)

    def _matching(
        self, after_position: int, up_to: int, event_types: Sequence[str] | None
    ) -> list[RecordedEvent]:
        wanted = set(event_types) if event_types is not None else None
        return [
            e
            for e in self.events[max(after_position, 0) : up_to]
            if wanted is None or e.event_type in wanted
        ]

    async def command_result(self, command_id: str) -> StoredResult | None:
        return self._results.get(command_id)

    async def expire_command_results(
        self, older_than: float, batch: int = 1000, batches: int = 10
    ) -> int:
        expired = _expire(self._result_times, older_than, batch * batches)
        for command_id in expired:
            del self._results[command_id]
        return len(expired)

    async def expire_processed_events(
        self, older_than: float, batch: int = 1000, batches: int = 10
    ) -> int:
        return len(_expire(self._processed, older_than, batch * batches))

    async def load_snapshot(
        self, aggregate_type: str, aggregate_id: str, shape: str
    ) -> tuple[int, dict[str, Any]] | None:
        kept = self._snapshots.get((aggregate_type, aggregate_id, shape))
        if kept is None:
            return None
        return kept[0], json.loads(json.dumps(kept[1]))  # a copy: the caller may change it

    async def save_snapshot(
        self, aggregate_type: str, aggregate_id: str, version: int, state: str, shape: str
    ) -> None:
        key = (aggregate_type, aggregate_id, shape)  # one per shape, as in PostgreSQL
        kept = self._snapshots.get(key)
        if kept is None or kept[0] < version:
            self._snapshots[key] = (version, json.loads(state))


def _expire(times: dict[K, float], older_than: float, at_most: int) -> list[K]:
    """Forget up to `at_most` of the keys noted (monotonic time) over `older_than` seconds
    ago, oldest first; returns them."""
    cutoff = time.monotonic() - older_than
    old = sorted((key for key, at in times.items() if at < cutoff), key=times.__getitem__)
    for key in old[:at_most]:
        del times[key]
    return old[:at_most]
