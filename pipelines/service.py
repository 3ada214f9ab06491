"""`Service`: where business logic is declared. The platform does the rest.

service = Service("orders", version="1.2.0", calls=[ReserveStock])

@service.command(PlaceOrder)
async def place_order(command: PlaceOrder, ctx: Context) -> PlaceOrderResult: ...

@service.on(OrderPlaced)
async def notify(event: OrderPlaced, ctx: Context) -> None: ...

app = service.app      # faststream run examples.orders:app [--workers N]
"""

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI
from faststream import FastStream

from pipelines.calls import Calls
from pipelines.contracts import Command, Contract, Event, InvalidContract, Query, check_contract
from pipelines.dispatch import Handler, HandlerFn, Policy
from pipelines.instance import ServiceInstance
from pipelines.querycache import Cached, ReadModel
from pipelines.registry import RegisterService, describe
from pipelines.settings import Settings, get_settings

F = TypeVar("F", bound=HandlerFn)


class Service:
    def __init__(
        self,
        name: str,
        *,
        version: str = "1.0.0",
        description: str = "",
        http_port: int | None = None,
        migrations: Path | None = None,
        calls: Sequence[type[Command] | type[Query]] = (),
    ) -> None:
        self.name = name
        # the contracts it sends: its identity on the bus holds their permissions, no others
        self.calls = Calls(name, calls)
        self.version = version
        self.description = description
        self.http_port = http_port  # also settable as {NAME}_PORT, e.g. AUTH_PORT
        self.migrations = migrations  # a folder of NNNN_name.sql files this service owns
        self.published: list[type[Event]] = []
        self.background_tasks: list[Callable[[ServiceInstance], Awaitable[None]]] = []
        self._http: FastAPI | None = None
        self.requests: dict[str, Handler] = {}
        self.subscriptions: dict[tuple[str, str], Handler] = {}
        self.projections: list[Any] = []
        self._app: FastStream | None = None

    def command(
        self,
        contract: type[Command],
        *,
        policies: Sequence[Policy] = (),
        result: type[Any] | None = None,
    ) -> Callable[[F], F]:
        """Handle a command: the handler records events on aggregates and returns a result."""
        return self._request(contract, policies, result, Command)

    def query(
        self,
        contract: type[Query],
        *,
        policies: Sequence[Policy] = (),
        result: type[Any] | None = None,
        reads: ReadModel | None = None,
        cache: Cached | None = None,
    ) -> Callable[[F], F]:
        """Answer a query: the handler reads and returns, it never records events.

        `reads` names the projection it reads (for read-your-writes and invalidation);
        `cache` caches its results in Redis until an event of that projection changes them.
        """
        if cache is not None and reads is None:
            raise InvalidContract(f"{contract.__name__}: a cached query must say what it reads")
        return self._request(contract, policies, result, Query, reads=reads, cache=cache)

    def projection(self, projection: Any) -> None:
        """Keep `projection` up to date in this service's processes (one applies at a time)."""
        if any(p.name == projection.name for p in self.projections):
            raise InvalidContract(f"projection {projection.name} is already registered")
        self.projections.append(projection)

    def on(self, event: type[Event], *, subscriber: str | None = None) -> Callable[[F], F]:
        """Receive every `event` once (its own queue, `subscriber` defaults to the service)."""
        check_contract(event)
        name = subscriber or self.name

        def register(fn: F) -> F:
            key = (name, event.message_type())
            if key in self.subscriptions:
                raise InvalidContract(
                    f"{name} already subscribes to {key[1]}; pass subscriber= to add another"
                )
            self.subscriptions[key] = Handler(event, fn, subscriber=name)
            return fn

        return register

    def _request(
        self,
        contract: type[Contract],
        policies: Sequence[Policy],
        result: type[Any] | None,
        kind: type[Contract],
        **options: Any,
    ) -> Callable[[F], F]:
        check_contract(contract)
        if not issubclass(contract, kind):
            raise InvalidContract(f"{contract.__name__} is not a {kind.__name__}")

        def register(fn: F) -> F:
            if contract.message_type() in self.requests:
                raise InvalidContract(f"{contract.message_type()} already has a handler")
            self.requests[contract.message_type()] = Handler(
                contract, fn, tuple(policies), result, **options
            )
            return fn

        return register

    def publishes(self, *events: type[Event]) -> None:
        """Declare the events this service records, so callers can subscribe to them."""
        for event in events:
            check_contract(event)
            self.published.append(event)

    def background(
        self, fn: Callable[[ServiceInstance], Awaitable[None]]
    ) -> Callable[[ServiceInstance], Awaitable[None]]:
        """Run `fn(instance)` in every instance for as long as it runs (cancelled on stop).

        If it raises, it is logged with its traceback and run again with backoff, and the
        instance's `/health` says degraded, naming it, until the new run has lasted a while.
        """
        self.background_tasks.append(fn)
        return fn

    @property
    def http(self) -> FastAPI:
        """Routes this service serves beside `/health` (on `http_port`)."""
        if self._http is None:
            self._http = FastAPI(title=f"{self.name} service", version=self.version)
        return self._http

    def registration(self, instance_id: str) -> RegisterService:
        """How an instance introduces itself and its contracts to discovery."""
        contracts = [describe(h.contract, h) for h in self.requests.values()]
        contracts += [describe(event) for event in self.published]
        return RegisterService(
            service_name=self.name,
            version=self.version,
            instance_id=instance_id,
            service_description=self.description,
            contracts=contracts,
            calls=sorted(self.calls.message_types),
        )

    def instance(self, settings: Settings | None = None) -> ServiceInstance:
        """A runnable copy of this service: its broker, database pool and relay."""
        return ServiceInstance(self, settings or get_settings())

    @property
    def app(self) -> FastStream:
        if self._app is None:
            self._app = self.instance().app
        return self._app
