"""Event versions: older events in the log and on the bus are read as the current version,
through the upcasters declared with their class; a gap in the chain fails clearly, once."""

import asyncio
import io
import json
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import asyncpg
import pytest

import flows
from discovery.compatibility import breaking_changes, log_breaking_changes
from discovery.validation import check_registration
from flows import Flow, Run
from flows.runs import RunTable
from gateway.subscriptions import Delivery
from pipelines import Aggregate, Command, Context, Event, Service, UpcastError, applies, upcaster
from pipelines import headers as h
from pipelines.context import Context as HandlerContext
from pipelines.contracts import InvalidContract
from pipelines.errors import ValidationError
from pipelines.eventstore import NewEvent, RecordedEvent
from pipelines.messages import Incoming, decode
from pipelines.registry import RegisterService, describe
from pipelines.topology import dead_letter_queue_name, event_queue_name
from projections import Documents, Projection
from projections.progress import Progress
from projections.rebuild import Rebuild
from tests.conftest import eventually, purge, started

# --- the classes as the current code declares them --------------------------------------------


class Shelved(Event, service="stacks", version=2):
    """Version 1 had one `title`; version 2 has `titles`."""

    book_id: str
    titles: list[str]


@upcaster(Shelved, 1)
def one_title_to_many(data: dict[str, Any]) -> dict[str, Any]:
    title = data.pop("title")  # a version-2 payload has none: upcasting it twice would fail
    return {**data, "titles": [title]}


class Weighed(Event, service="stacks", version=3):
    """Version 1: `grams` as text; 2: `grams` as a number; 3: `kilograms`."""

    book_id: str
    kilograms: float


@upcaster(Weighed, 1)
def grams_as_number(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "grams": int(data["grams"])}


@upcaster(Weighed, 2)
def grams_to_kilograms(data: dict[str, Any]) -> dict[str, Any]:
    return {"bookId": data["bookId"], "kilograms": data["grams"] / 1000}


class Stamped(Event, service="stacks", version=3):
    """Only 2 -> 3 is declared: a version-1 event cannot be read."""

    book_id: str
    stamp: str


@upcaster(Stamped, 2)
def stamp_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return data


class StackedBook(Aggregate):
    aggregate_type = "StackedBook"
    titles: list[str] = []
    kilograms: float = 0.0
    stamp: str = ""

    @applies(Shelved)
    def _shelved(self, event: Shelved) -> None:
        self.titles = event.titles

    @applies(Weighed)
    def _weighed(self, event: Weighed) -> None:
        self.kilograms = event.kilograms

    @applies(Stamped)
    def _stamped(self, event: Stamped) -> None:
        self.stamp = event.stamp


def written(book_id: str, version: int, event_type: str, data: dict[str, Any], at: int) -> NewEvent:
    """An event as the code of schema version `at` appended it."""
    return NewEvent(
        "StackedBook",
        book_id,
        version,
        event_type,
        json.dumps(data),
        {"service": "stacks"},
        schema_version=at,
    )


def context(store: Any) -> HandlerContext:
    return Context("stacks", "Test", uuid.uuid4().hex, uuid.uuid4().hex, None, store)


# --- aggregates --------------------------------------------------------------------------------


async def test_an_aggregate_with_version_1_history_loads_under_version_2(orders) -> None:
    store = orders.runtime.store
    book_id = uuid.uuid4().hex
    await store.append(
        [
            written(book_id, 1, "Shelved", {"bookId": book_id, "title": "Dune"}, at=1),
            written(book_id, 2, "Shelved", {"bookId": book_id, "titles": ["Emma", "Ulysses"]}, 2),
        ]
    )
    stored = await store.read_stream("StackedBook", book_id)
    assert [e.schema_version for e in stored] == [1, 2]
    book = await context(store).load(StackedBook, book_id)
    assert (book.version, book.titles) == (2, ["Emma", "Ulysses"])

    other = uuid.uuid4().hex
    await store.append([written(other, 1, "Shelved", {"bookId": other, "title": "Dune"}, at=1)])
    assert (await context(store).load(StackedBook, other)).titles == ["Dune"]


async def test_the_previous_releases_readers_still_read_the_log(orders) -> None:
    """During the deploy of this release, the instances of the previous one read `read_log`
    and take its columns in order."""
    pool, book_id = orders.runtime.pool, uuid.uuid4().hex
    await orders.runtime.store.append(
        [written(book_id, 1, "Shelved", {"bookId": book_id, "titles": []}, at=2)]
    )
    rows = await pool.fetch("SELECT * FROM read_log(0, 3, NULL)")
    versioned = await pool.fetch("SELECT * FROM read_log_versioned(0, 3, NULL)")
    assert len(rows) == len(versioned) > 0
    assert [list(r.values()) for r in rows] == [list(r.values())[:-1] for r in versioned]
    assert list(rows[0].keys())[-1] == "causation_id"


async def test_upcasters_chain_from_version_1_to_3(orders) -> None:
    store = orders.runtime.store
    book_id = uuid.uuid4().hex
    await store.append([written(book_id, 1, "Weighed", {"bookId": book_id, "grams": "1500"}, at=1)])
    assert (await context(store).load(StackedBook, book_id)).kilograms == 1.5


async def test_new_events_record_their_classs_version(orders) -> None:
    store = orders.runtime.store
    ctx = context(store)
    book = ctx.create(StackedBook, uuid.uuid4().hex)
    book.record(Weighed(book_id=book.id, kilograms=2.0))
    await store.append(ctx.new_events())
    assert [e.schema_version for e in await store.read_stream("StackedBook", book.id)] == [3]
    assert (await context(store).load(StackedBook, book.id)).kilograms == 2.0


async def test_a_missing_step_fails_naming_the_event_the_version_and_the_step(orders) -> None:
    store = orders.runtime.store
    book_id = uuid.uuid4().hex
    await store.append([written(book_id, 1, "Stamped", {"bookId": book_id, "stamp": "x"}, at=1)])
    with pytest.raises(UpcastError) as failure:
        await context(store).load(StackedBook, book_id)
    message = failure.value.message
    assert "Stamped stored at version 1" in message
    assert "no upcaster from version 1 to 2" in message
    assert "@upcaster(Stamped, 1)" in message


def test_a_snapshot_of_an_older_event_version_is_not_reused() -> None:
    class Older(Event, service="stacks-shape"):
        book_id: str

    class Newer(Event, service="stacks-shape", version=2):
        book_id: str

    def fold(event_class: type[Event]) -> type[Aggregate]:
        class Folding(Aggregate):
            aggregate_type = "Folding"

            @applies(event_class)
            def _seen(self, event: Event) -> None:
                pass

        return Folding

    Newer.__name__ = Older.__name__  # the same event type, one version apart
    assert fold(Older).snapshot_shape != fold(Newer).snapshot_shape


# --- declaring upcasters -----------------------------------------------------------------------


def test_upcasters_are_checked_when_declared() -> None:
    with pytest.raises(InvalidContract, match="Shelved is at version 2"):
        upcaster(Shelved, 2)
    with pytest.raises(InvalidContract, match="declared twice"):
        upcaster(Shelved, 1)
    with pytest.raises(InvalidContract, match="only events have a schema version"):

        class Versioned(Command, version=2):
            pass

    with pytest.raises(InvalidContract, match="at most 99999"):

        class Overflowing(Event, service="stacks", version=100_000):
            pass

    assert (Shelved.__version__, Event.__version__) == (2, 1)


# --- the bus ---------------------------------------------------------------------------------


def incoming(body: dict[str, Any], **headers: Any) -> Incoming:
    return Incoming(None, "c", None, None, None, headers, json.dumps(body).encode())


def decoded(body: dict[str, Any], **headers: Any) -> Shelved:
    """The message decoded as the current `Shelved`."""
    event = decode(Shelved, incoming(body, **headers))
    assert isinstance(event, Shelved)
    return event


def test_a_message_is_upcast_by_the_version_its_header_names() -> None:
    v1, v2 = {"bookId": "b", "title": "Dune"}, {"bookId": "b", "titles": ["Emma"]}
    assert decoded(v1, **{h.SCHEMA_VERSION: 1}) == Shelved(book_id="b", titles=["Dune"])
    assert decoded(v1).titles == ["Dune"]  # no header: relayed before versions
    assert decoded(v2, **{h.SCHEMA_VERSION: 2}).titles == ["Emma"]
    assert decoded(v2, **{h.SCHEMA_VERSION: 9}).titles == ["Emma"]  # newer
    for bad in ("0", "two", "-1", "100000", "0" * 5000 + "1"):
        with pytest.raises(ValidationError, match="bad x-schema-version header"):
            decode(Shelved, incoming(v2, **{h.SCHEMA_VERSION: bad}))


# --- projections, live and rebuilt ------------------------------------------------------------

titles = Projection("stacks_titles")


@titles.on(Shelved)
async def shelved(event: Shelved, docs: Documents, meta: RecordedEvent) -> None:
    # meta.data, the wire form, is upcast too: handlers copy it into documents
    docs.put(event.book_id, {**meta.data, "version": meta.schema_version})


async def _titles(pool: Any, book_id: str) -> list[str] | None:
    try:
        doc = await pool.fetchval("SELECT doc FROM stacks_titles WHERE id = $1", book_id)
    except asyncpg.UndefinedTableError:  # the runner has not created it yet
        return None
    if doc is None:
        return None
    assert (doc["version"], "title" in doc) == (2, False)
    return list(doc["titles"])


async def test_a_projection_and_its_rebuild_read_version_1_events_as_version_2(
    settings, orders
) -> None:
    store, pool = orders.runtime.store, orders.runtime.pool
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    await store.append([written(old, 1, "Shelved", {"bookId": old, "title": "Dune"}, at=1)])
    await store.append([written(new, 1, "Shelved", {"bookId": new, "titles": ["Emma"]}, at=2)])
    invalidated: list[RecordedEvent] = []

    async def invalidate(projection: str, events: Sequence[RecordedEvent]) -> None:
        invalidated.extend(events)

    runner = asyncio.create_task(titles.runner(settings, pool, invalidate).run())
    try:

        async def projected() -> bool:
            return await _titles(pool, new) is not None

        await eventually(projected, what="the live projection to apply both events")
        assert await _titles(pool, old) == ["Dune"]
        assert await _titles(pool, new) == ["Emma"]
        # the query cache is invalidated by the fields of the current version
        seen = {e.data["bookId"]: e.data for e in invalidated}
        assert seen[old] == {"bookId": old, "titles": ["Dune"]}
        await Rebuild(titles, settings, pool, Progress("t", io.StringIO())).run()
        assert await _titles(pool, old) == ["Dune"]
        assert await _titles(pool, new) == ["Emma"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


# --- subscribers, through the relay ------------------------------------------------------------

reader = Service("stacks-reader")
received: dict[str, Any] = {}


@reader.on(Shelved)
async def note_shelved(event: Shelved, ctx: Context) -> None:
    received[event.book_id] = event.titles


@reader.on(Stamped)
async def note_stamped(event: Stamped, ctx: Context) -> None:
    received[event.book_id] = event.stamp


class Stamp(Command):
    book_id: str


stamps: list[str] = []


@reader.command(Stamp)
async def stamp(command: Stamp, ctx: Context) -> str:
    stamps.append(command.book_id)
    return (await ctx.load(StackedBook, command.book_id)).stamp


async def test_a_command_on_an_unreadable_history_is_answered_once_not_retried(
    settings, orders, rpc
) -> None:
    instance = reader.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    try:
        book_id = uuid.uuid4().hex
        event = written(book_id, 1, "Stamped", {"bookId": book_id, "stamp": "x"}, at=1)
        await orders.runtime.store.append([event])
        reply = await rpc.send("stacks-reader", Stamp(book_id=book_id))
        error = reply.json()["error"]
        assert (reply.ok, error["code"]) == (False, "INTERNAL_ERROR")
        assert "Stamped stored at version 1 cannot be read as version 3" in error["message"]
        assert error["details"]["step"] == 1
        assert stamps.count(book_id) == 1  # not retried: it cannot succeed later
    finally:
        await instance.stop()


async def test_a_subscriber_receives_relayed_version_1_events_as_version_2(
    settings, orders
) -> None:
    dead = dead_letter_queue_name(event_queue_name("stacks-reader", Stamped))
    await purge(settings, dead)
    instance = reader.instance(settings.model_copy(update={"relay_enabled": False}))
    await instance.start()
    try:
        store = orders.runtime.store  # the orders instance relays the log
        old, new, gap = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
        await store.append([written(old, 1, "Shelved", {"bookId": old, "title": "Dune"}, at=1)])
        await store.append([written(new, 1, "Shelved", {"bookId": new, "titles": ["Emma"]}, 2)])
        await store.append([written(gap, 1, "Stamped", {"bookId": gap, "stamp": "x"}, at=1)])
        await eventually(
            lambda: old in received and new in received, what="both Shelved events delivered"
        )
        assert (received[old], received[new]) == (["Dune"], ["Emma"])

        letter = await _one_dead_letter(settings, dead)
        assert gap not in received
        headers = letter.headers or {}
        assert headers[h.ERROR_TYPE] == "UpcastError"
        assert "Stamped stored at version 1" in str(headers[h.ERROR_MESSAGE])
        assert headers[h.RETRY_COUNT] == 1  # not retried: it cannot succeed later
        assert headers[h.SCHEMA_VERSION] == 1  # the relay said which version it carries
    finally:
        await instance.stop()


async def _one_dead_letter(settings: Any, queue: str) -> aio_pika.abc.AbstractIncomingMessage:
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        dlq = await (await connection.channel()).get_queue(queue, ensure=False)
        found: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def arrived() -> bool:  # polled: a dead letter announces itself to no one
            message = await dlq.get(no_ack=True, fail=False)
            if message is not None:
                found.append(message)
            return bool(found)

        await eventually(arrived, what=f"the dead letter in {queue}")
        return found[0]


# --- flows: a run started by an older version of its event --------------------------------------

shelving = Flow("shelving", starts_with=Shelved, key=lambda event: event.book_id)
driven: dict[str, list[str]] = {}


@shelving.steps
async def note_titles(event: Shelved, run: Run) -> None:
    driven[event.book_id] = event.titles


shelver = Service("stacks-shelver", migrations=flows.MIGRATIONS)
shelving_host = flows.host(shelver, shelving)


async def test_a_run_started_by_a_version_1_event_is_driven_with_version_2(settings) -> None:
    instance = await started(shelver, settings)
    try:
        book_id = uuid.uuid4().hex
        runs = RunTable(instance.runtime.pool)
        await runs.start("shelving", book_id, {"bookId": book_id, "title": "Dune"}, "c", "c", 1)
        for engine in shelving_host.engines:
            engine.wake()
        await eventually(lambda: book_id in driven, what="the run to be driven")
        assert driven[book_id] == ["Dune"]
    finally:
        await instance.stop()


# --- the gateway's clients ---------------------------------------------------------------------


def test_clients_are_told_which_version_an_event_was_written_in() -> None:
    data = {"bookId": "b-1", "title": "Dune"}
    older = Delivery.of("Shelved", data, {h.SCHEMA_VERSION: 1, h.GLOBAL_POSITION: 7}).envelope()
    assert (older["schemaVersion"], older["data"]) == (1, data)  # as written: no upcasting
    assert Delivery.of("Shelved", data, {h.SCHEMA_VERSION: b"2"}).schema_version == 2
    assert Delivery.of("Shelved", data, {}).schema_version == 1  # relayed before versions


# --- the registry's compatibility check -------------------------------------------------------


def _shelved_v1() -> Any:
    class Shelved(Event, service="stacks"):
        book_id: str
        title: str

    return describe(Shelved)


def _shelved_v2(*, bump: bool, upcast: bool) -> Any:
    class Shelved(Event, service="stacks", version=2 if bump else 1):
        book_id: str
        titles: list[str]

    if upcast:
        upcaster(Shelved, 1)(one_title_to_many)
    return describe(Shelved)


def test_the_registry_records_each_events_version_and_what_it_upcasts() -> None:
    info = describe(Weighed)
    assert (info.schema_version, info.upcasts_from) == (3, [1, 2])
    assert (describe(Stamped).schema_version, describe(Stamped).upcasts_from) == (3, [2])


def test_a_breaking_event_change_needs_a_version_and_an_upcaster() -> None:
    old = {"Shelved": _shelved_v1()}
    unversioned = breaking_changes(old, {"Shelved": _shelved_v2(bump=False, upcast=False)})
    assert [c.change for c in unversioned] == [
        "field-removed",
        "required-field-added",
        "version-not-bumped",
    ]
    assert "raise its version and declare @upcaster(Shelved, 1)" in unversioned[-1].describe()

    no_upcaster = breaking_changes(old, {"Shelved": _shelved_v2(bump=True, upcast=False)})
    assert [c.describe() for c in no_upcaster] == [
        "Shelved: version 2 cannot read the stored events of version 1: "
        "declare @upcaster(Shelved, 1)",
        "Shelved input: field 'title' removed",
    ]
    # the stored events are upcast, but the version still running reads the new ones too
    upcast = breaking_changes(old, {"Shelved": _shelved_v2(bump=True, upcast=True)})
    assert [c.describe() for c in upcast] == ["Shelved input: field 'title' removed"]


def test_a_raised_version_old_readers_can_read_is_compatible() -> None:
    class Shelved(Event, service="stacks", version=2):
        book_id: str
        title: str
        copies: int  # required from version 2: stored events are given one copy

    upcaster(Shelved, 1)(lambda data: {**data, "copies": 1})
    assert breaking_changes({"Shelved": _shelved_v1()}, {"Shelved": describe(Shelved)}) == []


def test_a_new_major_version_must_still_read_the_log() -> None:
    old = {"Shelved": _shelved_v1()}
    assert log_breaking_changes(old, {"Shelved": _shelved_v2(bump=True, upcast=False)})
    assert log_breaking_changes(old, {"Shelved": _shelved_v2(bump=True, upcast=True)}) == []


def test_discovery_refuses_versions_out_of_bounds() -> None:
    event = describe(Shelved)
    bad = [
        event.model_copy(update={"schema_version": 100_000}),
        event.model_copy(update={"upcasts_from": [2]}),
        event.model_copy(update={"upcasts_from": [1, 1]}),
        describe(Ping).model_copy(update={"schema_version": 2}),
    ]
    for contract in bad:
        registering = RegisterService(
            service_name="stacks", version="1.0.0", instance_id="i", contracts=[contract]
        )
        with pytest.raises(ValidationError, match=r"schema version|upcasts from"):
            check_registration(registering)
    fine = [describe(Weighed), describe(Ping)]
    check_registration(
        RegisterService(service_name="stacks", version="1.0.0", instance_id="i", contracts=fine)
    )


class Ping(Command):
    book_id: str


def _stamped(version: int, *steps: int) -> Any:
    class Stamped(Event, service="stacks", version=version):
        book_id: str
        stamp: str

    for step in steps:
        upcaster(Stamped, step)(stamp_v2_to_v3)
    return describe(Stamped)


def test_an_upcaster_dropped_by_a_later_version_breaks_the_older_events() -> None:
    old = {"Stamped": _stamped(2, 1)}
    for dropped in (_stamped(3, 2), _stamped(2)):
        changes = breaking_changes(old, {"Stamped": dropped})
        assert [(c.change, c.old) for c in changes] == [("upcaster-missing", "1")]
        assert "cannot read the stored events of version 1" in changes[0].describe()
    assert breaking_changes(old, {"Stamped": _stamped(3, 1, 2)}) == []
