"""DATABASE_READ_URL: queries read a standby once it has their read model's writes.

The standby here is a second database this test keeps behind the primary by hand: its copy
of the read model (marked, so an answer says where it was read) and its position are what a
streaming standby would have replayed so far.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from yarl import URL

from pipelines import Aggregate, Command, Context, Event, Query, Service, applies
from pipelines.database import Pool, create_pool, migrate
from pipelines.instance import ServiceInstance
from pipelines.querycache import Cached
from pipelines.rpc import Response, RpcClient
from pipelines.settings import Settings
from projections import Documents, Projection, state
from tests.gateway_rig import running_gateway
from tests.tcp_proxy import TcpProxy, proxy_for

ON_STANDBY = " (read on the standby)"


class Shelved(Event, service="catalogue"):
    book_id: str
    title: str


class Shelve(Command):
    book_id: str
    title: str


class FindBook(Query):
    book_id: str


class FindBookCached(Query):
    book_id: str


class Book(Aggregate):
    @applies(Shelved)
    def _shelved(self, event: Shelved) -> None:
        pass


books = Projection("catalogue_books")


@books.on(Shelved)
async def shelved(event: Shelved, docs: Documents, _meta: Any) -> None:
    docs.put(event.book_id, {"title": event.title})


service = Service("catalogue")
service.projection(books)


@service.command(Shelve)
async def shelve(command: Shelve, ctx: Context) -> str:
    book = await ctx.load(Book, command.book_id)
    book.record(Shelved(book_id=command.book_id, title=command.title))
    return command.book_id


async def title(book_id: str, ctx: Context) -> str:
    doc = await books.documents(ctx).get(book_id)
    return "" if doc is None else str(doc["title"])


@service.query(FindBook, reads=books)
async def find_book(query: FindBook, ctx: Context) -> str:
    return await title(query.book_id, ctx)


@service.query(FindBookCached, reads=books, cache=Cached(key="book_id"))
async def find_book_cached(query: FindBookCached, ctx: Context) -> str:
    return await title(query.book_id, ctx)


class Standby:
    """A database with the read model's tables, as far behind the primary as the test says."""

    def __init__(self, url: str, pool: Pool) -> None:
        self.url = url
        self.pool = pool

    async def catch_up(self, primary: Pool) -> int:
        """Copy the primary's read model as it is now (marked); returns its position."""
        position = await primary.fetchval(
            "SELECT position FROM projection_positions WHERE name = $1", books.name
        )
        docs = await primary.fetch(f'SELECT id, doc FROM "{books.name}"')
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f'DELETE FROM "{books.name}"')
            await conn.executemany(
                f'INSERT INTO "{books.name}" (id, doc) VALUES ($1, $2)',
                [(d["id"], {"title": d["doc"]["title"] + ON_STANDBY}) for d in docs],
            )
            await conn.execute(
                "UPDATE projection_positions SET position = $2 WHERE name = $1",
                books.name,
                position,
            )
        return int(position)


@pytest.fixture
async def standby(settings: Settings) -> AsyncIterator[Standby]:
    name = f"standby_{settings.database_schema}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = str(URL(settings.database_url).with_path(f"/{name}"))
    on_standby = settings.model_copy(update={"database_url": url})
    await migrate(on_standby)
    pool = await create_pool(on_standby, 2)
    async with pool.acquire() as conn:
        await state.ensure(conn, books)
    yield Standby(url, pool)
    await pool.close()
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


Start = Callable[..., Awaitable[ServiceInstance]]


async def catalogue(start_service: Start, read_url: str) -> ServiceInstance:
    return await start_service(service, database_read_url=read_url, relay_enabled=False)


async def shelve_book(rpc: RpcClient, book_id: str, name: str) -> int:
    placed = await rpc.send("catalogue", Shelve(book_id=book_id, title=name))
    assert placed.position is not None
    return placed.position


async def ask(
    rpc: RpcClient, query: Query, min_position: int | None = None, timeout: float = 30.0
) -> Response:
    fresh: dict[str, Any] = {} if min_position is None else {"x-min-position": min_position}
    return await rpc.send("catalogue", query, timeout=timeout, **fresh)


async def test_the_standby_answers_once_it_has_the_callers_writes(
    start_service: Start, standby: Standby, rpc: RpcClient
) -> None:
    instance = await catalogue(start_service, standby.url)
    book = uuid.uuid4().hex
    first = await shelve_book(rpc, book, "Emma")
    not_yet = await ask(rpc, FindBook(book_id=book), first)
    assert not_yet.result() == "Emma", "the standby had nothing yet: the primary answers"
    assert instance.runtime.pool is not None
    assert await standby.catch_up(instance.runtime.pool) == first
    second = await shelve_book(rpc, book, "Persuasion")

    behind = await ask(rpc, FindBook(book_id=book), second)
    assert behind.result() == "Persuasion", "the standby lags the caller's write"
    assert int(behind.headers["x-read-position"]) >= second
    reached = await ask(rpc, FindBook(book_id=book), first)
    assert reached.result() == "Emma" + ON_STANDBY
    assert int(reached.headers["x-read-position"]) == first
    anyhow = await ask(rpc, FindBook(book_id=book))
    assert anyhow.result() == "Emma" + ON_STANDBY


async def answered_on_standby_then(
    start_service: Start, standby: Standby, rpc: RpcClient
) -> tuple[TcpProxy, FindBook, str]:
    """Catalogue reading `standby` through a proxy; a book its copy has: (proxy, query, title
    on the primary)."""
    proxy, port, through_proxy = proxy_for(standby.url)
    await proxy.start(port)
    instance = await catalogue(start_service, through_proxy)
    book = uuid.uuid4().hex
    shelved = await shelve_book(rpc, book, "Middlemarch")
    await ask(rpc, FindBook(book_id=book), shelved)  # the primary's projection has it
    assert instance.runtime.pool is not None
    await standby.catch_up(instance.runtime.pool)
    query = FindBook(book_id=book)
    assert (await ask(rpc, query)).result() == "Middlemarch" + ON_STANDBY
    return proxy, query, "Middlemarch"


async def test_a_standby_going_away_leaves_the_queries_to_the_primary(
    start_service: Start, standby: Standby, rpc: RpcClient
) -> None:
    proxy, query, on_primary = await answered_on_standby_then(start_service, standby, rpc)
    await proxy.stop()
    gone = await ask(rpc, query)
    assert gone.ok and gone.result() == on_primary


async def test_a_silent_standby_leaves_the_queries_to_the_primary(
    start_service: Start, standby: Standby, rpc: RpcClient
) -> None:
    proxy, query, on_primary = await answered_on_standby_then(start_service, standby, rpc)
    proxy.freeze()  # no answer and no error: a frozen server or a cut network
    try:
        silent = await ask(rpc, query, timeout=5.0)
        assert silent.ok and silent.result() == on_primary
    finally:
        await proxy.stop()


async def test_a_standby_down_from_the_start_delays_nothing(
    start_service: Start, rpc: RpcClient, settings: Settings
) -> None:
    _proxy, _port, nowhere = proxy_for(settings.database_url)  # a port nothing listens on
    await catalogue(start_service, nowhere)
    book = uuid.uuid4().hex
    position = await shelve_book(rpc, book, "Lark Rise")
    answered = await ask(rpc, FindBook(book_id=book), position)
    assert answered.ok and answered.result() == "Lark Rise"


async def test_a_lagging_standbys_answer_is_not_cached(
    start_service: Start, standby: Standby, rpc: RpcClient
) -> None:
    instance = await catalogue(start_service, standby.url)
    assert instance.runtime.pool is not None
    book = uuid.uuid4().hex
    first = await shelve_book(rpc, book, "Cranford")
    await ask(rpc, FindBook(book_id=book), first)  # the primary's projection has it
    await standby.catch_up(instance.runtime.pool)
    query = FindBookCached(book_id=book)
    current = await ask(rpc, query)
    kept = await ask(rpc, query)
    assert (current.headers["x-cache"], kept.headers["x-cache"]) == ("miss", "hit")
    assert kept.result() == "Cranford" + ON_STANDBY, "a standby as recent as the primary"

    second = await shelve_book(rpc, book, "North and South")
    await ask(rpc, FindBook(book_id=book), second)  # the primary's projection has it
    stale = await ask(rpc, query)
    assert (stale.headers["x-cache"], stale.result()) == ("miss", "Cranford" + ON_STANDBY)
    await standby.catch_up(instance.runtime.pool)
    caught_up = await ask(rpc, query)
    assert caught_up.headers["x-cache"] == "miss", "the lagging answer was not kept"
    assert caught_up.result() == "North and South" + ON_STANDBY


async def test_the_gateway_keeps_no_answer_of_a_lagging_standby(
    start_service: Start, standby: Standby, rpc: RpcClient, settings: Settings
) -> None:
    instance = await catalogue(start_service, standby.url)
    assert instance.runtime.pool is not None
    book = uuid.uuid4().hex
    await ask(rpc, FindBook(book_id=book), await shelve_book(rpc, book, "Cranford"))
    await standby.catch_up(instance.runtime.pool)
    await ask(rpc, FindBook(book_id=book), await shelve_book(rpc, book, "Ruth"))
    path = f"/api/catalogue/find-book-cached?bookId={book}"
    async with running_gateway(settings, [service]) as (_app, http):
        stale = await http.get(path)
        assert stale.json() == "Cranford" + ON_STANDBY, "the standby lags: read there"
        await standby.catch_up(instance.runtime.pool)
        caught_up = await http.get(path)
        assert caught_up.json() == "Ruth" + ON_STANDBY, "the lagging answer was kept"
