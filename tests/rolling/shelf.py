"""What every release of the library service keeps as it was: the book query, its answer,
and the read model counting loans (built over each release's own `BookBorrowed`)."""

import logging
from typing import Annotated, Any

from pydantic import Field

from pipelines import Context, Event, Model, NotFound, Query, Service
from pipelines.eventstore import RecordedEvent
from pipelines.querycache import Cached
from projections import Documents, Projection

log = logging.getLogger("library")
BookId = Annotated[str, Field(min_length=1, max_length=64)]
Member = Annotated[str, Field(min_length=1, max_length=64)]


class Loan(Model):
    """A borrow's answer: the book's loans so far, this one included."""

    book_id: str
    times_borrowed: int


class GetBook(Query, permissions=["library:read"]):
    book_id: BookId


class BookView(Model):
    book_id: str
    member: str
    times_borrowed: int


def book_loans(borrowed: type[Event]) -> Projection:
    """The read model: one document per book, who has it and how often it was borrowed."""
    projection = Projection("book_loans")

    @projection.on(borrowed)
    async def count(event: Any, docs: Documents, meta: RecordedEvent) -> None:
        seen = await docs.get(event.book_id)
        times = seen["timesBorrowed"] + 1 if seen else 1
        docs.put(event.book_id, {"bookId": event.book_id, "member": event.member,
                                 "timesBorrowed": times})  # fmt: skip

    return projection


def library(version: str, description: str, borrowed: type[Event]) -> Service:
    """The service at `version`, publishing `borrowed`: the read model, its query, and a
    subscriber of its own events."""
    service = Service("library", version=version, description=description)
    service.publishes(borrowed)
    loans = book_loans(borrowed)
    service.projection(loans)

    @service.on(borrowed)
    async def note_loan(event: Any, ctx: Context) -> None:
        """Every borrow also reaches the library's own subscriber, decoded as this release's
        class whichever release wrote it (1.1.0 upcasts 1.0.0's events; 1.0.0 reads 1.1.0's
        as they are)."""
        log.debug("%s borrowed %s", event.member, event.book_id)

    @service.query(GetBook, result=BookView, reads=loans, cache=Cached(ttl=60, key="book_id"))
    async def get_book(query: GetBook, ctx: Context) -> BookView:
        doc = await loans.documents(ctx).get(query.book_id)
        if doc is None:
            raise NotFound(f"book {query.book_id} was never borrowed")
        return BookView.model_validate(doc)

    return service
