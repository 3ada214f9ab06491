"""The library service, release 1.0.0: members borrow books (`faststream run
tests.rolling.library_v1:app`)."""

from pipelines import Aggregate, Command, Context, Event, applies
from tests.rolling.shelf import BookId, Loan, Member, library


class BorrowBook(Command, permissions=["library:lend"]):
    book_id: BookId
    member: Member


class BookBorrowed(Event, service="library", permissions=["library:read"]):
    book_id: str
    member: str


class Book(Aggregate):
    snapshot_every = 5
    member: str = ""
    times_borrowed: int = 0

    @applies(BookBorrowed)
    def _borrowed(self, event: BookBorrowed) -> None:
        self.member = event.member
        self.times_borrowed += 1


service = library("1.0.0", "Lends books", BookBorrowed)


@service.command(BorrowBook, result=Loan)
async def borrow_book(command: BorrowBook, ctx: Context) -> Loan:
    book = await ctx.load(Book, command.book_id)
    book.record(BookBorrowed(book_id=command.book_id, member=command.member))
    return Loan(book_id=book.id, times_borrowed=book.times_borrowed)


app = service.app
