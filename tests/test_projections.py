"""order_summary: read-your-writes, paging, caching, failures, competing runners, rebuilds."""

import asyncio
import io
import uuid
from typing import Any

import pytest

from examples.orders.contracts import (
    CancelOrder,
    GetOrder,
    ListOrders,
    OrderPlaced,
    PlaceOrder,
)
from examples.orders.summary import order_summary
from pipelines import Context, Event, Query
from pipelines.contracts import InvalidContract
from pipelines.dispatch import Handler
from pipelines.errors import NotFound, Timeout, ValidationError
from pipelines.eventstore import RecordedEvent
from pipelines.querycache import Cached, keyed_fields
from pipelines.settings import Settings
from projections import Documents, Projection, SqlTable, state
from projections.fresh_table import FreshTable
from projections.progress import Progress
from projections.rebuild import Rebuild
from projections.status import status
from tests.conftest import eventually
from tests.folds import folded_orders, projected_orders

ITEMS = [{"sku": "plum", "quantity": 4, "unitPrice": "0.25"}]
ALL = ("orders:place", "orders:cancel", "orders:read")


async def place(rpc, token, customer: str):
    command = PlaceOrder.model_validate({"customerId": customer, "items": ITEMS})
    return await rpc.send("orders", command, token=token(customer, *ALL))


async def status_of(rpc, query: GetOrder, token: str) -> str:
    """The order's status, as the query answers it (from the cache or not)."""
    answered: str = (await rpc.send("orders", query, token=token)).result()["status"]
    return answered


async def test_read_your_writes_and_paging(orders, rpc, token) -> None:
    customer = uuid.uuid4().hex
    placed = [await place(rpc, token, customer) for _ in range(3)]
    auth = token(customer, *ALL)
    last = placed[-1]
    got = await rpc.send(
        "orders", GetOrder(order_id=last.result()["orderId"]), token=auth,
        **{"x-min-position": last.position},
    )  # fmt: skip
    assert got.result()["status"] == "placed" and got.result()["total"] == "1.00"
    page = await rpc.send(
        "orders", ListOrders(customer_id=customer, page_size=2), token=auth,
        **{"x-min-position": last.position},
    )  # fmt: skip
    body = page.result()
    assert (body["total"], body["page"], body["pageSize"], len(body["items"])) == (3, 1, 2, 2)
    assert body["items"][0]["orderId"] == last.result()["orderId"]  # newest first
    second = await rpc.send("orders", ListOrders(customer_id=customer, page=2, page_size=2),
                            token=auth)  # fmt: skip
    assert len(second.result()["items"]) == 1
    assert ListOrders().page == 1 and ListOrders().page_size == 20
    too_big = await rpc.request(
        "service.orders.queries.ListOrders", b'{"pageSize": 101}', headers={"x-user-token": auth}
    )
    assert too_big.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_cached_answers_are_invalidated_by_their_events(orders, rpc, token) -> None:
    customer = uuid.uuid4().hex
    auth = token(customer, *ALL)
    placed = await place(rpc, token, customer)
    query = GetOrder(order_id=placed.result()["orderId"])
    first = await rpc.send("orders", query, token=auth, **{"x-min-position": placed.position})
    again = await rpc.send("orders", query, token=auth)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.result() == first.result()

    cancelled = await rpc.send("orders", CancelOrder(order_id=query.order_id), token=auth)
    fresh = await rpc.send("orders", query, token=auth, **{"x-min-position": cancelled.position})
    assert fresh.result()["status"] == "cancelled"

    async def plain_answer_is_fresh() -> bool:
        return await status_of(rpc, query, auth) == "cancelled"

    await eventually(plain_answer_is_fresh, what="the cached answer to be invalidated")


async def test_an_answer_cached_by_key_outlives_other_keys_events(orders, rpc, token) -> None:
    """GetOrder is cached by order_id: another order's events leave its answer cached."""
    customer = uuid.uuid4().hex
    auth = token(customer, *ALL)
    mine, other = [await place(rpc, token, customer) for _ in range(2)]
    query = GetOrder(order_id=mine.result()["orderId"])
    first = await rpc.send("orders", query, token=auth, **{"x-min-position": other.position})
    assert first.headers["x-cache"] == "miss"

    cancelled = await rpc.send(
        "orders", CancelOrder(order_id=other.result()["orderId"]), token=auth
    )
    assert await orders.runtime.positions.wait("order_summary", cancelled.position, 10)
    after_other = await rpc.send("orders", query, token=auth)  # the other's cancel is projected
    assert after_other.headers["x-cache"] == "hit", "another order's event invalidated the answer"

    cancelled = await rpc.send("orders", CancelOrder(order_id=query.order_id), token=auth)
    after_mine = await rpc.send(
        "orders", query, token=auth, **{"x-min-position": cancelled.position}
    )
    assert after_mine.result()["status"] == "cancelled"

    async def plain_answer_is_fresh() -> bool:
        return await status_of(rpc, query, auth) == "cancelled"

    await eventually(plain_answer_is_fresh, what="the keyed answer to be invalidated")


def test_a_cache_key_every_invalidating_event_lacks_is_refused() -> None:
    class ByCustomer(Query, permissions=["orders:read"]):
        customer_id: str

    class Untagged(Event, service="orders"):
        note: str

    async def by_customer(query: ByCustomer, ctx: Context) -> None:
        raise AssertionError("never called: the handler is only checked")

    untagged = Projection("untagged")
    untagged.on(Untagged)(fragile_placed)
    handler = Handler(ByCustomer, by_customer, reads=untagged, cache=Cached(key="customer_id"))
    with pytest.raises(InvalidContract, match="Untagged does not have"):
        keyed_fields([handler])


async def test_a_position_the_read_model_has_not_reached_times_out(orders, rpc, token) -> None:
    pool = orders.runtime.pool
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE order_summary IN EXCLUSIVE MODE")  # the runner waits
        placed = await place(rpc, token, uuid.uuid4().hex)
        response = await rpc.send(
            "orders", GetOrder(order_id=placed.result()["orderId"]), token=token("t", *ALL),
            **{"x-min-position": placed.position},
        )  # fmt: skip
        with pytest.raises(Timeout, match="order_summary has not reached position"):
            response.result()


async def test_a_position_beyond_the_log_is_refused(orders, rpc, token) -> None:
    head = await orders.runtime.store.head_position()
    response = await rpc.send(
        "orders", GetOrder(order_id="x"), token=token("t", *ALL),
        **{"x-min-position": head + 10_000},
    )  # fmt: skip
    with pytest.raises(ValidationError, match="beyond the end of the log"):
        response.result()
    with pytest.raises(NotFound):
        (await rpc.send("orders", GetOrder(order_id="x"), token=token("t", *ALL))).result()


fragile = Projection("fragile_orders")
fixed: set[str] = set()


@fragile.on(OrderPlaced)
async def fragile_placed(event: OrderPlaced, docs: Documents, meta: RecordedEvent) -> None:
    if event.customer_id.startswith("poison") and event.customer_id not in fixed:
        raise ValueError(f"cannot handle {event.customer_id}")
    docs.put(event.order_id, {"customerId": event.customer_id})


async def test_failing_projection_stops_visibly_then_resumes(
    settings, orders, rpc, token, caplog
) -> None:
    pool = orders.runtime.pool
    runner = fragile.runner(settings, pool, None)
    task = asyncio.create_task(runner.run())
    poison, poison2 = f"poison-{uuid.uuid4().hex}", f"poison-{uuid.uuid4().hex}"
    try:
        before = await place(rpc, token, "fine-1")
        bad = await place(rpc, token, poison)
        after = await place(rpc, token, "fine-2")
        conn = await pool.acquire()
        try:
            await eventually(lambda: _state_is(conn, "failed"), what="the projection to stop")
            seen = await status(conn, "fragile_orders")
            assert seen.error_position == bad.position
            assert seen.error is not None and "cannot handle" in seen.error
            said = [r for r in caplog.records if "fragile_orders stopped" in r.getMessage()]
            stopped = vars(said[-1])  # its traceback, and the event it stopped at
            assert stopped["exc_info"] and stopped["position"] == bad.position
            assert stopped["messageType"] == "OrderPlaced" and stopped["messageId"]
            docs = {r["id"] for r in await pool.fetch("SELECT id FROM fragile_orders")}
            assert before.result()["orderId"] in docs
            assert after.result()["orderId"] not in docs  # stopped: no silent skip

            await state.skip(conn, "fragile_orders")
            await eventually(lambda: _has(pool, after), what="events after the skipped one")
            assert bad.position in (await status(conn, "fragile_orders")).skipped
            # a rebuild skips it again instead of dying on it for ever
            await Rebuild(fragile, settings, pool, Progress("f", io.StringIO())).run()
            rebuilt = {r["id"] for r in await pool.fetch("SELECT id FROM fragile_orders")}
            assert after.result()["orderId"] in rebuilt
            assert bad.result()["orderId"] not in rebuilt
            assert await _state_is(conn, "running")

            bad2 = await place(rpc, token, poison2)
            await eventually(lambda: _state_is(conn, "failed"), what="a second stop")
            fixed.add(poison2)  # the fix, then a restart
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            task = asyncio.create_task(fragile.runner(settings, pool, None).run())
            await eventually(lambda: _has(pool, bad2), what="the fixed event to apply")
            assert await _state_is(conn, "running")
        finally:
            await pool.release(conn)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _state_is(conn, expected: str) -> bool:
    try:
        return (await state.load(conn, "fragile_orders")).state == expected
    except LookupError:  # the runner has not created its row yet
        return False


async def _has(pool, reply) -> bool:
    return bool(
        await pool.fetchval("SELECT 1 FROM fragile_orders WHERE id = $1", reply.result()["orderId"])
    )


async def test_two_runners_only_one_applies(settings, orders) -> None:
    pool = orders.runtime.pool
    first = order_summary.runner(settings, pool, None)
    second = order_summary.runner(settings, pool, None)
    live = orders.runners["order_summary"]
    tasks = [asyncio.create_task(r.run()) for r in (first, second)]
    try:
        await asyncio.sleep(0.5)  # give the newcomers every chance to (wrongly) lead
        assert live.is_leader.is_set()
        assert not first.is_leader.is_set() and not second.is_leader.is_set()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_rebuild_swaps_while_queries_keep_answering(settings, orders, rpc, token) -> None:
    customer = uuid.uuid4().hex
    auth = token(customer, *ALL)
    placed = [await place(rpc, token, customer) for _ in range(30)]
    await rpc.send("orders", CancelOrder(order_id=placed[0].result()["orderId"]), token=auth)
    pool = orders.runtime.pool
    generation = (await pool.fetchval(
        "SELECT generation FROM projection_positions WHERE name = 'order_summary'"
    ))  # fmt: skip
    small = settings.model_copy(update={"rebuild_batch_size": 500})
    out = io.StringIO()
    rebuild = asyncio.create_task(Rebuild(order_summary, small, pool, Progress("o", out)).run())
    answers = 0
    while not rebuild.done():
        reply = await rpc.send("orders", ListOrders(customer_id=customer), token=auth)
        assert reply.result()["total"] == 30
        answers += 1
    await rebuild
    assert answers > 0 and "rebuilt" in out.getvalue()
    assert (
        await pool.fetchval(
            "SELECT generation FROM projection_positions WHERE name = 'order_summary'"
        )
        == generation + 1
    )
    table = order_summary.table(generation + 1)  # its indexes are built once it is written
    indexes = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
        table,
    )
    assert {f"{table}_{name}" for name in order_summary.indexes} <= {r[0] for r in indexes}
    more = await place(rpc, token, customer)  # the live runner follows the new generation
    await eventually(
        lambda: _listed(rpc, customer, auth, more.position, 31), what="the live runner"
    )
    assert await projected_orders(pool) == await folded_orders(pool)


async def _listed(rpc, customer, auth, position, count) -> bool:
    reply = await rpc.send("orders", ListOrders(customer_id=customer), token=auth,
                           **{"x-min-position": position})  # fmt: skip
    return bool(reply.ok and reply.result()["total"] == count)


class StopAfter(Progress):
    """Interrupts a rebuild after a number of batches, like Ctrl-C would."""

    def __init__(self, batches: int) -> None:
        super().__init__("interrupted", io.StringIO())
        self.batches = batches

    def update(self, applied: int, position: int, target: int) -> None:
        self.batches -= 1
        if self.batches == 0:
            raise KeyboardInterrupt


async def test_interrupted_rebuild_resumes(settings, orders, rpc, token) -> None:
    for _ in range(10):
        await place(rpc, token, "resume")
    pool = orders.runtime.pool
    folded = await pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = ANY($1::text[])",
        order_summary.event_types,
    )
    batch = max(2, folded // 4)  # several batches
    small = settings.model_copy(update={"rebuild_batch_size": batch})
    with pytest.raises(KeyboardInterrupt):
        await Rebuild(order_summary, small, pool, StopAfter(2)).run()
    stopped = await pool.fetchrow("SELECT position FROM projection_rebuilds")
    assert stopped is not None and stopped["position"] > 0
    out = io.StringIO()
    await Rebuild(order_summary, small, pool, Progress("o", out)).run()
    assert "resuming" in out.getvalue() and "rebuilt" in out.getvalue()
    assert await pool.fetchval("SELECT count(*) FROM projection_rebuilds") == 0
    assert await projected_orders(pool) == await folded_orders(pool)


async def test_a_superseded_runner_writes_nothing(settings, orders, rpc, token) -> None:
    """A batch read before a swap (whose old table is gone) or a moved checkpoint rolls back."""
    pool = orders.runtime.pool
    await asyncio.wait_for(orders.runners["order_summary"].is_leader.wait(), 30)
    conn = await pool.acquire()
    try:
        before = await state.load(conn, "order_summary")
        await place(rpc, token, "superseded")
        await Rebuild(order_summary, settings, pool, Progress("o", io.StringIO())).run()
        stale = order_summary.runner(settings, pool, None)
        stale.position, stale.generation = before.position, before.generation
        assert await stale.step(conn)  # into the dropped table: rolled back, checkpoint followed
        after = await state.load(conn, "order_summary")
        assert (stale.position, stale.generation) == (after.position, after.generation)

        written = await pool.fetchval("SELECT max(updated_at) FROM order_summary")
        stale.position = before.position  # the live generation, but behind its checkpoint
        assert await stale.step(conn)
        assert await pool.fetchval("SELECT max(updated_at) FROM order_summary") == written
        assert stale.position == (await state.load(conn, "order_summary")).position
    finally:
        await pool.release(conn)
    assert await projected_orders(pool) == await folded_orders(pool)


reading_ahead = Projection("reading_ahead")
next_read: dict[str, asyncio.Event] = {}  # set by the rebuild's second read of the log


@reading_ahead.on(OrderPlaced)
async def waits_for_the_next_read(event: OrderPlaced, docs: Documents, meta) -> None:
    if "started" not in next_read:  # the first event of the first batch
        next_read["started"] = asyncio.Event()
        await asyncio.wait_for(next_read["read"].wait(), 5)
    docs.put(event.order_id, {"customerId": event.customer_id})


async def test_a_rebuild_reads_its_next_batch_while_it_applies_one(
    settings, orders, rpc, token
) -> None:
    for _ in range(4):
        await place(rpc, token, "ahead")
    small = settings.model_copy(update={"rebuild_batch_size": 2})
    rebuild = Rebuild(reading_ahead, small, orders.runtime.pool, Progress("a", io.StringIO()))
    next_read.clear()
    next_read["read"] = asyncio.Event()
    read_page = rebuild.store.read_page
    reads = 0

    async def counted(*args, **kwargs):
        nonlocal reads
        reads += 1
        if reads == 2:
            next_read["read"].set()
        return await read_page(*args, **kwargs)

    rebuild.store.read_page = counted  # type: ignore[method-assign]
    await rebuild.run()  # the first batch waits for the second read: it would time out
    assert reads >= 3 and "started" in next_read


order_counts = Projection("order_counts")


@order_counts.on(OrderPlaced)
async def count_order(event: OrderPlaced, docs: Documents, meta: RecordedEvent) -> None:
    counted = await docs.get(event.customer_id) or {"orders": 0}
    docs.put(event.customer_id, {"orders": counted["orders"] + 1})


async def five_orders_in_batches_of_two(settings, rpc, token) -> tuple[str, Settings]:
    """Five orders of a new customer, and settings that rebuild two events per batch."""
    customer = uuid.uuid4().hex
    for _ in range(5):
        await place(rpc, token, customer)
    return customer, settings.model_copy(update={"rebuild_batch_size": 2})


async def test_a_rebuild_replaces_documents_it_wrote_in_earlier_batches(
    settings, orders, rpc, token
) -> None:
    """A rebuild copies its new documents in; a put of one already there is upserted."""
    customer, small = await five_orders_in_batches_of_two(settings, rpc, token)
    pool = orders.runtime.pool
    rebuild = Rebuild(order_counts, small, pool, Progress("c", io.StringIO()))
    await rebuild.run()
    assert not rebuild.fresh.copying  # the second batch met the first one's document
    doc = await pool.fetchval("SELECT doc FROM order_counts WHERE id = $1", customer)
    assert doc == {"orders": 5}


async def test_copied_documents_read_back_as_upserted_ones(orders) -> None:
    odd: dict[str, dict[str, Any]] = {
        "tab\tand\nnewline": {"text": 'a\tb\nc \\ "quoted" é 日本 🙂', "n": [1, 2.5, None]},
        "back\\slash é": {"nested": {"empty": {}, "list": [], "flag": True}},
    }
    written, copying = {}, FreshTable()
    async with orders.runtime.pool.acquire() as conn:
        for name, fresh in (("copied", copying), ("upserted", None)):
            table = f"docs_{name}_{uuid.uuid4().hex[:8]}"
            await conn.execute(f'CREATE TABLE "{table}" (id text PRIMARY KEY, doc jsonb NOT NULL, '
                               "updated_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
            docs = Documents(conn, table, fresh)
            for doc_id, doc in odd.items():
                docs.put(doc_id, doc)
            await docs.flush()
            rows = await conn.fetch(f'SELECT id, doc FROM "{table}"')
            written[name] = {r["id"]: r["doc"] for r in rows}
            await conn.execute(f'DROP TABLE "{table}"')
    assert copying.copying  # not fallen back to the upsert
    assert written["copied"] == written["upserted"] == odd


folding_ahead = Projection("folding_ahead")
second_batch: dict[str, Any] = {}


@folding_ahead.on(OrderPlaced)
async def folds_ahead(event: OrderPlaced, docs: Documents, meta: RecordedEvent) -> None:
    second_batch["events"] += 1
    if second_batch["events"] == 3:  # batches of 2: the first event of the second batch
        second_batch["folding"].set()
    docs.put(event.order_id, {"customerId": event.customer_id})


async def test_a_rebuild_folds_its_next_batch_while_it_writes_one(
    settings, orders, rpc, token, monkeypatch
) -> None:
    for _ in range(4):
        await place(rpc, token, "fold-ahead")
    small = settings.model_copy(update={"rebuild_batch_size": 2})
    pool = orders.runtime.pool
    second_batch.update(events=0, folding=asyncio.Event())
    flush, flushes = Documents.flush, 0

    async def first_waits(documents: Documents) -> None:
        nonlocal flushes
        if documents.table.startswith("folding_ahead"):
            flushes += 1
            if flushes == 1:  # written once the second batch is being folded: no deadlock
                await asyncio.wait_for(second_batch["folding"].wait(), 5)
        await flush(documents)

    monkeypatch.setattr(Documents, "flush", first_waits)
    await Rebuild(folding_ahead, small, pool, Progress("f", io.StringIO())).run()
    placed = await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
    assert await pool.fetchval("SELECT count(*) FROM folding_ahead") == placed


orders_per_customer = Projection(
    "orders_per_customer",
    schema="CREATE TABLE IF NOT EXISTS {table} (customer text PRIMARY KEY, orders int NOT NULL)",
)


@orders_per_customer.on(OrderPlaced)
async def add_order(event: OrderPlaced, table: SqlTable, meta: RecordedEvent) -> None:
    await table.execute(
        "INSERT INTO {table} VALUES ($1, 1) "
        "ON CONFLICT (customer) DO UPDATE SET orders = {table}.orders + 1",
        event.customer_id,
    )


async def test_a_projection_with_its_own_sql_table_rebuilds_each_event_once(
    settings, orders, rpc, token
) -> None:
    customer, small = await five_orders_in_batches_of_two(settings, rpc, token)
    pool = orders.runtime.pool
    for _ in range(2):  # the second time into a new generation
        await Rebuild(orders_per_customer, small, pool, Progress("s", io.StringIO())).run()
        counted = "SELECT orders FROM orders_per_customer WHERE customer = $1"
        assert await pool.fetchval(counted, customer) == 5
