"""`TestKit`: run services' handlers, projections and flows in memory, given/when/then.

    kit = TestKit(orders.service)
    await (
        kit.given(Order, "o-1", OrderPlaced(order_id="o-1", customer_id="c-1", ...))
        .when(CancelOrder(order_id="o-1"), caller=user("c-2", "orders:cancel"))
        .then(PolicyViolation)
    )

Messages go through the platform's own processors (decoding, the caller's signed token,
permissions, policies, idempotency, retries on a version clash), appends go to an in-memory
log with the PostgreSQL log's guarantees, and every event appended is then folded into the
kit's projections and delivered to its subscribers and flows, until nothing more happens.
Nothing connects to RabbitMQ, PostgreSQL or Redis.

A subscriber function may carry `in_memory(runtime) -> handler`: what the kit runs in its
place (flows do, to drive their runs in memory; see `flows.testing`).
"""

import json
import uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pipelines import headers as h
from pipelines.aggregate import Aggregate
from pipelines.contracts import Command, Contract, Event
from pipelines.dispatch import (
    CommandProcessor,
    EventProcessor,
    HandlerFn,
    Processor,
    QueryProcessor,
    on_fresh_state,
)
from pipelines.errors import PlatformError, ServiceUnavailable
from pipelines.eventstore import NewEvent, RecordedEvent
from pipelines.identity import Caller, TokenCodec
from pipelines.memory_log import MemoryEventStore
from pipelines.messages import Incoming, Reply, decode
from pipelines.rpc import Response
from pipelines.service import Service
from pipelines.settings import Settings
from pipelines.testing.callers import Acting, user
from pipelines.testing.memory_runtime import MemoryRpc, MemoryRuntime
from pipelines.testing.outcome import UNSET, DeadLetter, Outcome, Sent
from pipelines.topology import request_queue_name

MAX_CASCADE = 10_000  # events one message may set off before the kit calls it a loop
InMemory = Callable[[MemoryRuntime], HandlerFn]


@dataclass(frozen=True, slots=True)
class Subscriber:
    processor: EventProcessor  # for its context; the kit delivers in memory
    fn: HandlerFn
    runtime: MemoryRuntime

    @property
    def name(self) -> str:
        return self.processor.handler.subscriber or self.processor.rt.service

    def wants(self, event: RecordedEvent) -> bool:
        contract = self.processor.handler.contract
        service = contract.__service__
        return event.event_type == contract.message_type() and service in (
            None,
            event.metadata.get("service"),
        )


History = tuple[str, str, tuple[Event, ...]]  # aggregate type, id, events


class TestKit:
    __test__ = False  # not a pytest test class

    def __init__(self, *services: Service, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.store = MemoryEventStore()
        self.rpc = MemoryRpc(self._route)
        self.tokens = TokenCodec(self.settings)
        self.runtimes: dict[str, MemoryRuntime] = {}  # by service name
        self.processors: dict[str, Processor] = {}  # by request queue
        self.subscribers: list[Subscriber] = []
        self.sent: list[Sent] = []
        self.dead_letters: list[DeadLetter] = []
        self._sent_ids: set[str] = set()
        self._folded = 0  # the log is folded and delivered up to this position
        self.every_permission: frozenset[str] = frozenset()  # what admin() holds
        for service in services:
            self._add(service)

    def _add(self, service: Service) -> None:
        self.every_permission |= named_permissions(service)
        runtime = MemoryRuntime(service.calls, self.settings, self.store, self.rpc)
        self.runtimes[service.name] = runtime
        for handler in service.requests.values():
            queue = request_queue_name(service.name, handler.contract)
            kind = CommandProcessor if issubclass(handler.contract, Command) else QueryProcessor
            self.processors[queue] = kind(runtime, handler, queue)
        for handler in service.subscriptions.values():
            substitute: InMemory | None = getattr(handler.fn, "in_memory", None)
            fn = substitute(runtime) if substitute is not None else handler.fn
            processor = EventProcessor(runtime, handler, f"{service.name}.{handler.subscriber}")
            self.subscribers.append(Subscriber(processor, fn, runtime))
        for projection in service.projections:
            self.store.read_models[projection.name] = projection.in_memory()

    def given(
        self, aggregate: type[Aggregate] | str, aggregate_id: str, *events: Event
    ) -> "Scenario":
        """Start from these events of one aggregate, as if recorded before (not delivered)."""
        return Scenario(self).given(aggregate, aggregate_id, *events)

    def meanwhile(
        self, aggregate: type[Aggregate] | str, aggregate_id: str, *events: Event
    ) -> "Scenario":
        """See `Scenario.meanwhile`."""
        return Scenario(self).meanwhile(aggregate, aggregate_id, *events)

    def when(self, message: Contract, caller: Acting | None = None) -> "When":
        """See `Scenario.when`."""
        return Scenario(self).when(message, caller)

    async def _run(self, scenario: "Scenario", message: Contract, acting: Acting) -> Outcome:
        history, races = scenario.taken()
        for aggregate_type, aggregate_id, events in history:
            await self.store.append(await self._new_events(aggregate_type, aggregate_id, events))
        await self._settle(deliver=False)
        raced: set[uuid.UUID] = set()
        for aggregate_type, aggregate_id, events in races:
            batch = await self._new_events(aggregate_type, aggregate_id, events)
            raced.update(e.event_id for e in batch)
            self.store.before_next_append(batch)
        start, sent, dead = await self.store.head_position(), len(self.sent), len(self.dead_letters)
        result, error = None, None
        try:
            if isinstance(message, Event):
                await self._deliver_new(message)
            else:
                result = json.loads((await self._handle(message, acting)).body or b"null")
        except PlatformError as exc:
            error = exc
        if self.store.races_not_run():
            raise AssertionError(
                f"{message.message_type()} appended nothing, so no race with `meanwhile` "
                f"events took place{f' (refused: {error.code})' if error else ''}"
            )
        await self._settle(deliver=True)
        appended = await self.store.read_all(start, MAX_CASCADE)
        return Outcome(
            message,
            result,
            error,
            [e for e in appended if e.event_id not in raced],
            self.sent[sent:],
            self.dead_letters[dead:],
        )

    async def _new_events(
        self, aggregate_type: str, aggregate_id: str, events: tuple[Event, ...]
    ) -> list[NewEvent]:
        version = await self.store.stream_version(aggregate_type, aggregate_id)
        return [
            NewEvent(
                aggregate_type,
                aggregate_id,
                version + i,
                event.message_type(),
                event.model_dump_json(),
                {"service": type(event).__service__ or "testkit"},
                schema_version=event.__version__,
            )
            for i, event in enumerate(events, start=1)
        ]

    async def _handle(self, message: Contract, acting: Acting) -> Reply:
        """A command or query from `acting`, as the gateway would send it; raises its refusal."""
        queue = self._queue_of(message)
        headers: dict[str, Any] = {h.MESSAGE_TYPE: message.message_type()}
        if acting.caller is not None:
            ttl = -1 if acting.expired else None
            headers[h.USER_TOKEN] = self.tokens.issue(self._granted(acting), ttl=ttl)
        correlation = uuid.uuid4().hex
        incoming = Incoming(
            uuid.uuid4().hex, correlation, None, None, None, headers, message.to_json()
        )
        return await self._process(queue, incoming)

    def _granted(self, acting: Acting) -> Caller:
        """The caller; as admin(), holding every permission the kit's services name."""
        assert acting.caller is not None
        if not acting.every_permission:
            return acting.caller
        return replace(acting.caller, permissions=self.every_permission)

    def _queue_of(self, message: Contract) -> str:
        for queue, processor in self.processors.items():
            if processor.handler.contract is type(message):
                return queue
        raise LookupError(f"no service in the kit handles {message.message_type()}")

    async def _process(self, queue: str, incoming: Incoming) -> Reply:
        processor = self.processors[queue]
        try:
            return await processor.process(incoming)
        finally:
            await self.runtimes[processor.rt.service].settle()

    async def _route(self, queue: str, incoming: Incoming) -> Response:
        """A message a handler or flow sent: answered as the bus would answer it."""
        if incoming.message_id not in self._sent_ids:  # a step asking again is one message
            self._sent_ids.add(incoming.message_id or "")
            body = json.loads(incoming.body)
            self.sent.append(Sent(queue, incoming.header(h.MESSAGE_TYPE) or "", body))
        if queue not in self.processors:
            raise ServiceUnavailable(f"nothing in the kit consumes {queue}")
        try:
            reply = await self._process(queue, incoming)
        except PlatformError as exc:
            reply = Reply.error(exc, incoming.correlation_id)
        return Response(reply.body, reply.ok, reply.position, {})

    async def _settle(self, *, deliver: bool) -> None:
        """Fold what was appended into the projections and, if `deliver`, hand it to the
        subscribers, until they append nothing more."""
        for _ in range(MAX_CASCADE):
            events = await self.store.read_all(self._folded, MAX_CASCADE)
            if not events:
                return
            self._folded = events[-1].position
            for model in self.store.read_models.values():
                await model.apply(events)
            for event in events if deliver else ():
                for subscriber in self.subscribers:
                    if subscriber.wants(event):
                        await self._deliver(subscriber, event)
        raise AssertionError(f"events kept setting off events ({MAX_CASCADE} rounds): a loop?")

    async def _deliver_new(self, event: Event) -> None:
        """An event another service recorded, delivered to the kit's subscribers."""
        recorded = RecordedEvent(
            0, uuid.uuid4(), "", "", 0, event.message_type(),
            json.loads(event.model_dump_json()),
            {"service": type(event).__service__},
            datetime.now(UTC), uuid.uuid4().hex, None, event.__version__,
        )  # fmt: skip
        for subscriber in self.subscribers:
            if subscriber.wants(recorded):
                await self._deliver(subscriber, recorded)

    async def _deliver(self, subscriber: Subscriber, recorded: RecordedEvent) -> None:
        """As `EventProcessor` does: once per subscriber, its appends retried on a clash."""
        event_id = str(recorded.event_id)
        if not self.store.record_processed(subscriber.name, event_id):
            return
        headers = {h.SCHEMA_VERSION: recorded.schema_version}  # as the relay publishes it
        incoming = Incoming(
            event_id, recorded.correlation_id or uuid.uuid4().hex, event_id, None, None, headers,
            json.dumps(recorded.data).encode(),
        )  # fmt: skip

        async def decide() -> None:
            event = decode(subscriber.processor.handler.contract, incoming)
            ctx = subscriber.processor.context(incoming, None)
            ctx.event = recorded
            await subscriber.fn(event, ctx)
            await self.store.append(
                ctx.new_events(), correlation_id=incoming.correlation_id, causation_id=event_id
            )
            await ctx.committed()

        try:
            await on_fresh_state(decide, self.settings.concurrency_retries)
        except PlatformError as exc:
            self.dead_letters.append(DeadLetter(subscriber.name, recorded.event_type, exc))
        await subscriber.runtime.settle()


class Scenario:
    """History (`given`), races (`meanwhile`), then one message (`when`)."""

    def __init__(self, kit: TestKit) -> None:
        self.kit = kit
        self.history: list[History] = []
        self.races: list[History] = []

    def given(
        self, aggregate: type[Aggregate] | str, aggregate_id: str, *events: Event
    ) -> "Scenario":
        self.history.append((_type_of(aggregate), aggregate_id, events))
        return self

    def meanwhile(
        self, aggregate: type[Aggregate] | str, aggregate_id: str, *events: Event
    ) -> "Scenario":
        """Another writer appends these events after the handler read its aggregate and
        before it appends: the handler's append meets a version clash."""
        self.races.append((_type_of(aggregate), aggregate_id, events))
        return self

    def taken(self) -> tuple[list[History], list[History]]:
        """The history and races not yet written: each is written once, however many
        messages follow it."""
        taken = self.history, self.races
        self.history, self.races = [], []
        return taken

    def when(self, message: Contract, caller: Acting | None = None) -> "When":
        """Handle `message`: a command or query from `caller` (by default a user holding just
        the permissions its contract requires), or an event another service recorded."""
        acting = caller or user("user-1", *type(message).__permissions__)
        return When(self.kit._run(self, message, acting))


class When:
    """Awaited: the Outcome. `await ....then(...)`: checked at once."""

    def __init__(self, outcome: Awaitable[Outcome]) -> None:
        self._outcome = outcome

    def __await__(self) -> Generator[Any, None, Outcome]:
        return self._outcome.__await__()

    async def then(
        self, *expected: Any, result: Any = UNSET, sent: list[Contract] | None = None
    ) -> Outcome:
        return (await self).then(*expected, result=result, sent=sent)


def _type_of(aggregate: type[Aggregate] | str) -> str:
    return aggregate if isinstance(aggregate, str) else aggregate.aggregate_type


def named_permissions(service: Service) -> frozenset[str]:
    """The permissions a service's contracts require, and its events' admin permissions."""
    contracts = [h.contract for h in service.requests.values()] + list(service.published)
    return frozenset(
        p for contract in contracts for p in (*contract.__permissions__, *contract.__admin__)
    )
