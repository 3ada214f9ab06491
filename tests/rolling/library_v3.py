"""The library service, release 1.2.0, which discovery refuses: members are numbered now, so
a borrow's `member` is an integer, in the command and in its event (raised to version 3, with no
upcaster: none turns a name into a number). That breaks 1.1.0's callers and leaves the events
already recorded unreadable, so this instance must consume nothing while 1.1.0 answers."""

from pipelines import Aggregate, Command, Context, Event, applies
from tests.rolling.shelf import BookId, Loan, library


class BorrowBook(Command, permissions=["library:lend"]):
    book_id: BookId
    member: int


class BookBorrowed(Event, service="library", permissions=["library:read"], version=3):
    book_id: str
    member: int


class Book(Aggregate):
    borrowers: set[int] = set()

    @applies(BookBorrowed)
    def _borrowed(self, event: BookBorrowed) -> None:
        self.borrowers.add(event.member)


service = library("1.2.0", "Lends books to numbered members", BookBorrowed)


@service.command(BorrowBook, result=Loan)
async def borrow_book(command: BorrowBook, ctx: Context) -> Loan:
    book = await ctx.load(Book, command.book_id)
    book.record(BookBorrowed(book_id=book.id, member=command.member))
    return Loan(book_id=book.id, times_borrowed=book.version)


app = service.app
