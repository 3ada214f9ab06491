"""The library service, release 1.1.0, compatible with 1.0.0 so that both run during a rolling
deploy: a borrow may carry a note (an optional field of the command and of its event)."""

from pipelines import Aggregate, Command, Context, Event, applies
from tests.rolling.shelf import BookId, Loan, Member, library

Note = str | None


class BorrowBook(Command, permissions=["library:lend"]):
    book_id: BookId
    member: Member
    note: Note = None


class BookBorrowed(Event, service="library", permissions=["library:read"]):
    book_id: str
    member: str
    note: Note = None


class Book(Aggregate):
    snapshot_every = 5
    member: str = ""
    times_borrowed: int = 0
    note: Note = None

    @applies(BookBorrowed)
    def _borrowed(self, event: BookBorrowed) -> None:
        self.member, self.note = event.member, event.note
        self.times_borrowed += 1


service = library("1.1.0", "Lends books, with notes", BookBorrowed)


@service.command(BorrowBook, result=Loan)
async def borrow_book(command: BorrowBook, ctx: Context) -> Loan:
    book = await ctx.load(Book, command.book_id)
    book.record(BookBorrowed(book_id=command.book_id, member=command.member, note=command.note))
    return Loan(book_id=book.id, times_borrowed=book.times_borrowed)


app = service.app
