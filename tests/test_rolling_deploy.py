"""The rolling-deploy drill: two releases of a service run at once, as separate processes on the
same queues and database, under load through the gateway; a third, breaking release is refused
and consumes nothing. The releases are in tests/rolling/."""

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pipelines.settings import Settings
from tests.conftest import eventually
from tests.rolling.rig import BORROW, CLIENTS, Platform, Reader, Tally

pytestmark = pytest.mark.drill

LOAD_SECONDS = 30.0
PERMISSIONS = ("library:lend", "library:read")
KINDS = ("BorrowBook", "GetBook", "BookBorrowed")  # a command, a query, an event subscriber


async def test_two_releases_serve_side_by_side_and_a_breaking_one_is_refused(
    settings: Settings, token: Callable[..., str]
) -> None:
    platform = Platform(settings)
    try:
        await platform.start()
        for version in ("1.0.0", "1.1.0"):
            await platform.release(version).start(ready=f"registered library {version}")
        await eventually(
            lambda: gateway_knows_notes(platform.http), timeout=30,
            what="the gateway to route BorrowBook with 1.1.0's schema",
        )  # fmt: skip
        tally = Tally()
        try:
            await under_load(platform, tally, token)
            await assert_served(platform, tally)
            await assert_log_and_read_model(platform)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{platform.tail()}") from None
    finally:
        await platform.close()


async def under_load(platform: Platform, tally: Tally, token: Callable[..., str]) -> None:
    """Clients borrow and read for LOAD_SECONDS; 1.2.0 is started (and refused) meanwhile."""
    stopping = asyncio.Event()
    readers = [
        Reader(platform.http, token(f"member-{n}", *PERMISSIONS), f"member-{n}", tally)
        for n in range(CLIENTS)
    ]
    clients = [asyncio.create_task(reader.run(stopping)) for reader in readers]
    loop = asyncio.get_running_loop()
    until = loop.time() + LOAD_SECONDS
    try:
        await eventually(lambda: sum(tally.answered.values()) >= 50, timeout=20, what="load")
        refused = platform.release("1.2.0")
        await refused.start()  # and serving /health
        await refused.wait_for("refused by discovery")
        await assert_refused(platform)
        await asyncio.sleep(until - loop.time())  # the load's duration, not a synchronisation
    finally:
        stopping.set()
        await asyncio.gather(*clients)


async def gateway_knows_notes(http: httpx.AsyncClient) -> bool:
    document = (await http.get("/openapi.json")).json()
    if BORROW not in document["paths"]:
        return False
    body = document["paths"][BORROW]["post"]["requestBody"]["content"]["application/json"]
    schema = document["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    return "note" in schema["properties"]


async def assert_refused(platform: Platform) -> None:
    """1.2.0 says it is refused, and why; `banyan status` shows it; discovery lists only the
    two compatible releases' instances."""
    health = (await platform.get("1.2.0", "/health")).json()
    assert health["status"] == "refused", health
    assert health["refused"]["code"] == "CONFLICT", health
    reason = health["refused"]["message"]
    assert "would break callers of 1.1.0" in reason and "member" in reason, reason
    status = await platform.cli("1.2.0", "status", status=1)  # a refused instance: unhealthy
    assert f"refused: {reason}"[:60] in status, status
    ids = {
        (await platform.get(version, "/health")).json()["instanceId"]
        for version in ("1.0.0", "1.1.0")
    }
    library = await platform.registry("library")
    assert library["version"] == "1.1.0", library
    assert {i["instanceId"] for i in library["instances"]} == ids, library


async def assert_served(platform: Platform, tally: Tally) -> None:
    """Every answer a 2xx showing the book as its log says; both compatible releases handled
    commands and queries, the refused one nothing."""
    assert not tally.errors, f"{len(tally.errors)} errors, the first: {tally.errors[:10]}"
    assert min(tally.answered[kind] for kind in ("borrow", "borrow+note", "read")) > 0, tally
    for version in ("1.0.0", "1.1.0"):
        handled = await platform.handled(version)
        assert all(handled[kind] for kind in KINDS), (version, handled)
    refused = await platform.handled("1.2.0")
    assert sum(refused.values()) == 0, f"the refused release handled messages: {refused}"


async def assert_log_and_read_model(platform: Platform) -> None:
    """Books hold events of both releases in turn, and a snapshot of each; the subscriber
    handled every event; nothing was dead-lettered; the read model is the fold of the log, and
    so is a rebuild of it."""
    histories = await borrow_histories(platform)
    mixed = [book for book, versions in histories.items() if interleaved(versions)]
    assert mixed, f"no book's history has 1.0.0's events after 1.1.0's and back: {histories}"
    shapes = await platform.fetch(
        "SELECT aggregate_id FROM snapshots GROUP BY aggregate_id HAVING count(*) = 2"
    )
    assert shapes, "no book has a snapshot of each release: they replaced each other's"
    await eventually(lambda: caught_up(platform), timeout=30, what="book_loans to catch up")
    await eventually(
        lambda: all_noted(platform), timeout=30, what="the subscriber to handle every borrow"
    )
    assert await projected(platform) == await folded(platform)
    await eventually(
        lambda: drained(platform), timeout=30, what="every queue empty, no dead letter"
    )
    await platform.cli("1.1.0", "projections", "rebuild", "book_loans")
    assert await projected(platform) == await folded(platform)


async def borrow_histories(platform: Platform) -> dict[str, list[int]]:
    """Each book's borrows in order, by the schema version they were recorded at (1: by
    1.0.0, 2: by 1.1.0)."""
    rows = await platform.fetch(
        "SELECT aggregate_id, array_agg(schema_version ORDER BY version) AS versions "
        "FROM events WHERE event_type = 'BookBorrowed' GROUP BY aggregate_id"
    )
    return {row["aggregate_id"]: row["versions"] for row in rows}


def interleaved(versions: list[int]) -> bool:
    """1.1.0 loaded 1.0.0's events (through the upcaster) and 1.0.0 loaded 1.1.0's."""
    return {(1, 2), (2, 1)} <= set(itertools.pairwise(versions))


async def caught_up(platform: Platform) -> bool:
    (row,) = await platform.fetch(
        "SELECT (SELECT position FROM projection_positions WHERE name = 'book_loans') >= "
        "(SELECT max(position) FROM events WHERE event_type = 'BookBorrowed') AS done"
    )
    return bool(row["done"])


async def all_noted(platform: Platform) -> bool:
    (row,) = await platform.fetch(
        "SELECT count(*) AS unhandled FROM events e WHERE e.event_type = 'BookBorrowed' "
        "AND NOT EXISTS (SELECT 1 FROM processed_events p "
        "WHERE p.subscriber = 'library' AND p.event_id = e.event_id)"
    )
    return bool(row["unhandled"] == 0)


async def folded(platform: Platform) -> dict[str, dict[str, Any]]:
    """book_loans as a plain fold of the log."""
    books: dict[str, dict[str, Any]] = {}
    rows = await platform.fetch(
        "SELECT data FROM events WHERE event_type = 'BookBorrowed' ORDER BY position"
    )
    for row in rows:
        book, seen = row["data"]["bookId"], books.get(row["data"]["bookId"])
        times = seen["timesBorrowed"] + 1 if seen else 1
        books[book] = {"bookId": book, "member": row["data"]["member"], "timesBorrowed": times}
    return books


async def projected(platform: Platform) -> dict[str, dict[str, Any]]:
    return {row["id"]: row["doc"] for row in await platform.fetch("SELECT id, doc FROM book_loans")}


async def drained(platform: Platform) -> bool:
    queues = await platform.queues()
    dead = {name: count for name, count in queues.items() if name.startswith("dlq.") and count}
    assert not dead, f"dead letters: {dead}"
    return not any(queues.values())
