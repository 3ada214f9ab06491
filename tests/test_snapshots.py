"""Snapshots never hide a change of the fold: a class of another shape folds the log again."""

import subprocess
import sys
import uuid

from pipelines import Aggregate, Event, applies
from pipelines.context import Context
from pipelines.eventstore import NewEvent

BORROWS = 6


class Borrowed(Event, service="library"):
    book_id: str


class Book(Aggregate):
    """Version 1 of the fold: whether the book is out."""

    aggregate_type = "Book"
    snapshot_every = 5
    out: bool = False

    @applies(Borrowed)
    def _borrowed(self, event: Borrowed) -> None:
        self.out = True


class CountingBook(Aggregate):
    """Version 2, deployed later: it also counts the borrows."""

    aggregate_type = "Book"
    snapshot_every = 5
    out: bool = False
    times_borrowed: int = 0

    @applies(Borrowed)
    def _borrowed(self, event: Borrowed) -> None:
        self.out = True
        self.times_borrowed += 1


def context(store) -> Context:
    return Context("library", "Borrow", uuid.uuid4().hex, uuid.uuid4().hex, None, store)


async def borrowed_book(store) -> str:
    book_id = uuid.uuid4().hex
    events = [
        NewEvent("Book", book_id, version, "Borrowed", Borrowed(book_id=book_id).model_dump_json())
        for version in range(1, BORROWS + 1)
    ]
    await store.append(events)
    old = await context(store).load(Book, book_id)
    await store.save_snapshot(
        "Book", book_id, old.version, old.model_dump_json(), Book.snapshot_shape
    )
    return book_id


async def test_a_changed_fold_ignores_older_snapshots(orders) -> None:
    store = orders.runtime.store
    book_id = await borrowed_book(store)
    assert Book.snapshot_shape != CountingBook.snapshot_shape
    ctx = context(store)
    book = await ctx.load(CountingBook, book_id)
    assert (book.version, book.times_borrowed) == (BORROWS, BORROWS)  # not 0 from the snapshot
    assert ctx.snapshots_due() == [book]  # a fresh snapshot of the new shape follows


async def test_the_same_class_starts_from_its_snapshot(orders) -> None:
    store = orders.runtime.store
    book_id = await borrowed_book(store)
    await store.pool.execute(  # the snapshot now disagrees with the log: proves it is used
        "UPDATE snapshots SET state = jsonb_set(state, '{out}', 'false') WHERE aggregate_id = $1",
        book_id,
    )
    assert (await context(store).load(Book, book_id)).out is False


async def test_a_snapshot_of_a_new_shape_is_kept_whatever_the_old_ones_version(orders) -> None:
    store = orders.runtime.store
    book_id = await borrowed_book(store)
    counted = await context(store).load(CountingBook, book_id)
    await store.save_snapshot(
        "Book", book_id, counted.version, counted.model_dump_json(), CountingBook.snapshot_shape
    )
    found = await store.load_snapshot("Book", book_id, CountingBook.snapshot_shape)
    assert found is not None and found[1]["times_borrowed"] == BORROWS


async def test_two_releases_side_by_side_each_keep_their_own_snapshot(orders) -> None:
    """During a rolling deploy the old and the new class take turns on one aggregate: each
    starts from its own snapshot instead of folding the whole history again."""
    store = orders.runtime.store
    book_id = await borrowed_book(store)
    counted = await context(store).load(CountingBook, book_id)
    await store.save_snapshot(
        "Book", book_id, counted.version, counted.model_dump_json(), CountingBook.snapshot_shape
    )
    assert await store.load_snapshot("Book", book_id, Book.snapshot_shape) is not None


async def test_a_shape_not_written_for_a_day_is_dropped(orders) -> None:
    store = orders.runtime.store
    book_id = await borrowed_book(store)
    await store.pool.execute(
        "UPDATE snapshots SET created_at = now() - interval '25 hours' WHERE aggregate_id = $1",
        book_id,
    )
    counted = await context(store).load(CountingBook, book_id)
    await store.save_snapshot(
        "Book", book_id, counted.version, counted.model_dump_json(), CountingBook.snapshot_shape
    )
    shapes = await store.pool.fetch("SELECT shape FROM snapshots WHERE aggregate_id = $1", book_id)
    assert [row["shape"] for row in shapes] == [CountingBook.snapshot_shape]


SHAPE_OF = """
from pipelines import Aggregate, applies
from tests.test_snapshots import Borrowed

class Shelf(Aggregate):
    titles: list[str] = []

    @applies(Borrowed)
    def _borrowed(self, event: Borrowed) -> None:
        self.titles = [title for title in self.titles if title != event.book_id]

print(Shelf.snapshot_shape)
"""


def test_a_shape_is_the_same_in_every_process() -> None:
    """A fold holding a comprehension (a code object of its own) keeps one shape."""
    shapes = {
        subprocess.run(
            [sys.executable, "-c", SHAPE_OF], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(shapes) == 1
