"""The statements that append to the log: one round trip, one statement, whatever the shape.

Each append takes its positions from `events_position_seq` (nextval), after taking its shared
in-flight lock keyed by the next position not yet handed out (see migration 0004 and
`readable_bound()`). The lock is an uncorrelated sub-select in the WHERE clause: PostgreSQL
runs it once, as the one-time filter of the insert's source, before the first nextval.

A single event is sent as scalars, a batch as arrays unnested in the server; a command's
idempotency record is written by the same statement, so events and record commit together
(a repeated command id fails on `command_results_pkey`).
"""

from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

IN_FLIGHT_LOCK = (
    "(SELECT pg_advisory_xact_lock_shared(in_flight_namespace()"
    " + coalesce(pg_sequence_last_value('events_position_seq'), 0) + 1)) IS NOT NULL"
)
INSERT_EVENTS = (
    "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version, event_type, "
    "data, metadata, schema_version, correlation_id, causation_id) "
    "SELECT nextval('events_position_seq'), {source} WHERE "
    + IN_FLIGHT_LOCK
    + " RETURNING position"
)
ONE_EVENT = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10"
MANY_EVENTS = (
    "e.*, $9, $10 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], "
    "$6::json[], $7::json[], $8::int[]) AS e"
)
RECORD_COMMAND = (
    "INSERT INTO command_results (command_id, message_type, result, fingerprint, position) "
    "SELECT $11, $12, $13, $14, max(position) FROM added"
)
RECORD_COMMAND_ALONE = (
    "INSERT INTO command_results (command_id, message_type, result, fingerprint, position) "
    "VALUES ($1, $2, $3, $4, NULL)"
)
COMMAND_RECORDED_CONSTRAINT = "command_results_pkey"


class Event(Protocol):
    event_id: Any
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    data: str
    schema_version: int


@cache
def append_statement(count: int, with_command: bool) -> str:
    """The statement appending `count` events (1 or more), recording the command if asked."""
    if count == 0:
        return RECORD_COMMAND_ALONE
    insert = INSERT_EVENTS.format(source=ONE_EVENT if count == 1 else MANY_EVENTS)
    if not with_command:
        return insert if count == 1 else f"WITH added AS ({insert}) SELECT max(position) FROM added"
    return (
        f"WITH added AS ({insert}), recorded AS ({RECORD_COMMAND}) SELECT max(position) FROM added"
    )


def event_arguments(
    events: Sequence[Event],
    metadata: Sequence[str],
    correlation_id: str | None,
    causation_id: str | None,
) -> tuple[Any, ...]:
    """$1..$10 of `append_statement`: scalars for one event, arrays for more."""
    if len(events) == 1:
        e = events[0]
        return (
            e.event_id, e.aggregate_type, e.aggregate_id, e.version, e.event_type, e.data,
            metadata[0], e.schema_version, correlation_id, causation_id,
        )  # fmt: skip
    return (
        [e.event_id for e in events],
        [e.aggregate_type for e in events],
        [e.aggregate_id for e in events],
        [e.version for e in events],
        [e.event_type for e in events],
        [e.data for e in events],
        list(metadata),
        [e.schema_version for e in events],
        correlation_id,
        causation_id,
    )
