"""The library service, release 1.1.0, compatible with 1.0.0 so that both run during a rolling
deploy. A borrow may carry a note (an optional field of the command and of its event), and
loans last three weeks: `BookBorrowed` is at version 2, which says how long (`loanDays`); its
upcaster tells what version 1 meant (the two-week loans of 1.0.0). 1.0.0 reads version 2 as
it is, ignoring the fields it does not know."""

from typing import Any

from pipelines import Aggregate, Command, Context, Event, applies, upcaster
from tests.rolling.shelf import BookId, Loan, Member, library

Note = str | None
LOAN_DAYS = 21


class BorrowBook(Command, permissions=["library:lend"]):
    book_id: BookId
    member: Member
    note: Note = None


class BookBorrowed(Event, service="library", permissions=["library:read"], version=2):
    book_id: str
    member: str
    loan_days: int
    note: Note = None


@upcaster(BookBorrowed, 1)
def two_week_loans(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "loanDays": 14}


class Book(Aggregate):
    snapshot_every = 5
    member: str = ""
    times_borrowed: int = 0
    loan_days: int = 0
    note: Note = None

    @applies(BookBorrowed)
    def _borrowed(self, event: BookBorrowed) -> None:
        self.member, self.loan_days, self.note = event.member, event.loan_days, event.note
        self.times_borrowed += 1


service = library("1.1.0", "Lends books for three weeks, with notes", BookBorrowed)


@service.command(BorrowBook, result=Loan)
async def borrow_book(command: BorrowBook, ctx: Context) -> Loan:
    book = await ctx.load(Book, command.book_id)
    borrowed = BookBorrowed(
        book_id=book.id, member=command.member, loan_days=LOAN_DAYS, note=command.note
    )
    book.record(borrowed)
    return Loan(book_id=book.id, times_borrowed=book.times_borrowed)


app = service.app
