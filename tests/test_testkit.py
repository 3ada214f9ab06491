"""The test kit (pipelines.testing): what it checks and reports, and that it needs no server."""

import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from examples import fulfilment
from examples.orders import service as orders_service
from examples.orders.contracts import OrderLine, PlaceOrder
from flows import FlowError
from pipelines import (
    Aggregate,
    Command,
    ConcurrencyError,
    Context,
    Event,
    Forbidden,
    Model,
    Service,
    applies,
    upcaster,
)
from pipelines.errors import ServiceUnavailable
from pipelines.testing import TestKit, user
from projections import DocumentReader, Documents, Projection
from projections.fresh_table import FreshTable
from projections.testing import MemoryDocuments
from tests.tcp_proxy import free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


class Noted(Event, service="notes"):
    note_id: str
    text: str


class Note(Command, permissions=["notes:write"]):
    note_id: str
    text: str


class Forward(Command):
    text: str


class Answer(Model):
    ok: bool


class Jot(Aggregate):
    text: str = ""

    @applies(Noted)
    def _noted(self, event: Noted) -> None:
        self.text = event.text


notes = Service("notes", calls=[Forward])


@notes.command(Note)
async def note(command: Note, ctx: Context) -> Answer:
    ctx.create(Jot, command.note_id).record(Noted(note_id=command.note_id, text=command.text))
    return Answer(ok=True)


@notes.command(Forward)
async def forward(command: Forward, ctx: Context) -> dict[str, str]:
    """Sends to a service the kit does not run."""
    try:
        await ctx.send("elsewhere", Forward(text=command.text))
    except ServiceUnavailable as exc:
        return {"code": exc.code}
    return {"code": "sent"}


@notes.on(Noted)
async def refuse_empty(event: Noted, ctx: Context) -> None:
    if not event.text.strip():
        raise Forbidden("an empty note")


class Tagged(Event, service="tags", version=2):
    """Version 1 had one `tag`; version 2 has `tags`."""

    item_id: str
    tags: list[str]


@upcaster(Tagged, 1)
def one_tag_to_many(data: dict[str, Any]) -> dict[str, Any]:
    tag = data.pop("tag")  # a version-2 payload has none: upcasting it again fails
    return {**data, "tags": [tag]}


class Tag(Command):
    item_id: str
    tags: list[str]


class Item(Aggregate):
    tags: list[str] = []

    @applies(Tagged)
    def _tagged(self, event: Tagged) -> None:
        self.tags = event.tags


tags = Service("tags")
seen_tags: list[list[str]] = []


@tags.command(Tag)
async def tag(command: Tag, ctx: Context) -> Answer:
    item = await ctx.load(Item, command.item_id)
    item.record(Tagged(item_id=command.item_id, tags=[*item.tags, *command.tags]))
    return Answer(ok=True)


@tags.on(Tagged)
async def remember(event: Tagged, ctx: Context) -> None:
    async def seen() -> None:
        seen_tags.append(event.tags)

    ctx.after_commit(seen)


def test_the_examples_unit_tests_pass_with_every_server_unreachable() -> None:
    """RabbitMQ, PostgreSQL and Redis all point to a port nothing listens on."""
    closed = free_port()
    env = {
        **os.environ,
        "RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{closed}/",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/test",
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
    }
    began = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "examples", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - began
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed is not None and int(passed.group(1)) >= 5, run.stdout[-2000:]
    assert took < 60, f"the examples' unit tests took {took:.1f}s"


async def test_then_says_how_the_events_differ() -> None:
    kit = TestKit(notes)
    with pytest.raises(AssertionError, match=r"actual .*hello.*\n.*expected .*bye"):
        await kit.when(Note(note_id="n-1", text="hello")).then(Noted(note_id="n-1", text="bye"))
    with pytest.raises(AssertionError, match=r"appended \['Noted'\], expected \[\]"):
        await kit.when(Note(note_id="n-2", text="hello")).then()
    with pytest.raises(AssertionError, match="was not refused"):
        await kit.when(Note(note_id="n-3", text="hello")).then(Forbidden)


async def test_a_refused_command_appends_nothing_and_then_names_the_refusal() -> None:
    kit = TestKit(notes)
    outcome = await kit.when(Note(note_id="n-1", text="x"), caller=user("u-1"))
    outcome.then("INSUFFICIENT_PERMISSIONS")
    assert outcome.error is not None and outcome.error.status == 403 and outcome.events == []
    with pytest.raises(AssertionError, match="refused with INSUFFICIENT_PERMISSIONS, not CONFLICT"):
        outcome.then("CONFLICT")


async def test_a_subscriber_refusing_an_event_is_a_dead_letter() -> None:
    outcome = await TestKit(notes).when(Note(note_id="n-1", text="  "))
    assert [(d.subscriber, d.error.code) for d in outcome.dead_letters] == [
        ("notes", "INSUFFICIENT_PERMISSIONS")
    ]
    with pytest.raises(AssertionError, match="refused by subscribers"):
        outcome.then(Noted(note_id="n-1", text="  "))


async def test_creating_an_aggregate_whose_id_is_taken_is_a_conflict() -> None:
    kit = TestKit(notes)
    await kit.when(Note(note_id="n-1", text="a")).then(Noted(note_id="n-1", text="a"))
    await kit.when(Note(note_id="n-1", text="b")).then(ConcurrencyError)


async def test_a_message_to_a_service_outside_the_kit_is_unroutable() -> None:
    outcome = await TestKit(notes).when(Forward(text="hi"))
    assert outcome.result == {"code": "SERVICE_UNAVAILABLE"}  # as when nothing consumes it
    assert [(s.queue, s.body) for s in outcome.sent] == [
        ("service.elsewhere.commands.Forward", {"text": "hi"})
    ]


async def test_a_flow_waiting_forever_for_a_missing_service_says_so() -> None:
    """Without inventory, the reservation's deadline passes; its undo has no deadline and
    would wait for inventory for ever: the kit stops there, naming the run."""
    kit = TestKit(orders_service, fulfilment.service)
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("1"))
    with pytest.raises(FlowError, match=r"order-fulfilment:.* waits for an answer"):
        await kit.when(PlaceOrder(items=[line]))


DOCS = {
    "a": {"owner": "ann", "at": "2026-01-02", "n": 1, "ok": True},
    "b": {"owner": "bob", "at": "2026-01-01", "n": 2, "ok": False},
    "c": {"owner": "ann", "n": 3, "ok": True},
    "d": {"owner": "ann", "at": "2026-01-02", "n": 10, "ok": False},
}
FINDS: list[tuple[dict[str, Any], dict[str, Any]]] = [  # (where, the other arguments)
    ({}, {}),
    ({"owner": "ann"}, {"order_by": "at"}),
    ({"owner": "ann"}, {"order_by": "at", "descending": True}),
    ({"ok": True}, {}),
    ({"n": 10}, {}),
    ({"owner": None}, {"order_by": "n", "offset": 1, "limit": 2}),
    ({"owner": "nobody"}, {}),
]


async def test_memory_documents_find_what_postgresql_finds(orders) -> None:
    """The same documents, in a table and in memory: every find answers the same."""
    pool = orders.runtime.pool
    projection = Projection(f"kit_docs_{uuid.uuid4().hex[:8]}")
    table = projection.table(1)
    for statement in projection.ddl(1):
        await pool.execute(statement)
    async with pool.acquire() as conn:
        written = Documents(conn, table)
        for doc_id, doc in DOCS.items():
            written.put(doc_id, doc)
        await written.flush()
    memory = MemoryDocuments(projection)
    for doc_id, doc in DOCS.items():
        memory.put(doc_id, doc)
    real = DocumentReader(pool, table)
    for where, options in FINDS:
        assert await memory.find(where, **options) == await real.find(where, **options), where
    assert await memory.get("a") == await real.get("a") and await memory.get("x") is None


class Colour(Enum):
    RED = "red"


@dataclass
class Parcel:
    weight: Decimal
    sent: date


UNTYPED_IN_JSON = {  # values JSON has no type for: stored as the platform encodes them
    "at": datetime(2026, 12, 7, 5, 23, 19, 123456, tzinfo=UTC),
    "noon": datetime(2026, 12, 7, 12, tzinfo=UTC),
    "id": uuid.UUID("5d41402a-bc4b-2a76-b971-9d911017c592"),
    "price": Decimal("12.50"),
    "colour": Colour.RED,
    "parcel": Parcel(Decimal("0.5"), date(2026, 12, 7)),
}


async def test_memory_documents_store_values_as_postgresql_does(orders) -> None:
    """A handler may put values JSON has no type for (times, ids, enums, dataclasses): the
    test kit reads them back as the real documents do, and so does a handler reading back
    what it wrote in the same batch. Before, the kit read a time back with a space where
    PostgreSQL has a T, and a dataclass as its repr; the batch handed back the objects."""
    pool = orders.runtime.pool
    projection = Projection(f"kit_docs_{uuid.uuid4().hex[:8]}")
    for statement in projection.ddl(1):
        await pool.execute(statement)
    memory = MemoryDocuments(projection)
    async with pool.acquire() as conn:
        for fresh in (None, FreshTable()):  # an upsert, and a rebuild's COPY
            written = Documents(conn, projection.table(1), fresh)
            written.put(f"doc-{fresh}", UNTYPED_IN_JSON)
            written.patch(f"doc-{fresh}", {"patched": UNTYPED_IN_JSON["at"]})
            in_batch = await written.get(f"doc-{fresh}")
            await written.flush()
            memory.put(f"doc-{fresh}", UNTYPED_IN_JSON)
            memory.patch(f"doc-{fresh}", {"patched": UNTYPED_IN_JSON["at"]})
            real = await DocumentReader(pool, projection.table(1)).get(f"doc-{fresh}")
            assert real is not None and real["at"] == "2026-12-07T05:23:19.123456+00:00"
            assert await memory.get(f"doc-{fresh}") == real
            assert in_batch == real


async def test_a_race_that_never_took_place_is_reported() -> None:
    scenario = TestKit(notes).meanwhile(Jot, "n-1", Noted(note_id="n-1", text="other"))
    with pytest.raises(AssertionError, match=r"no race .* \(refused: INSUFFICIENT_PERMISSIONS\)"):
        await scenario.when(Note(note_id="n-1", text="mine"), caller=user("u-1"))


async def test_events_of_a_raised_version_are_read_as_written() -> None:
    """The kit records and delivers each event with its class's version, as the platform does:
    a version-2 event is not upcast again as if version 1 had written it. (The subscriber's
    follow-up runs once its effects are committed.)"""
    seen_tags.clear()
    kit = TestKit(tags)
    outcome = await kit.given(Item, "i-1", Tagged(item_id="i-1", tags=["old"])).when(
        Tag(item_id="i-1", tags=["new"])
    )
    assert outcome.error is None and outcome.dead_letters == []
    outcome.then(Tagged(item_id="i-1", tags=["old", "new"]))
    assert [e.schema_version for e in outcome.events] == [2]
    assert seen_tags == [["old", "new"]]
    await kit.when(Tagged(item_id="i-2", tags=["told"])).then()
    assert seen_tags == [["old", "new"], ["told"]]
