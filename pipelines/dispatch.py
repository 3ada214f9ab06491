"""How one message is processed: decode, verify the caller, policies, handler, append, reply.

Commands and queries are answered on their `reply_to`; events are recorded as processed per
subscriber. A message is acknowledged only after its effects are committed. Failures:
- platform errors (validation, permissions, policy, not found, conflict) are answered, not retried;
- anything else is retried with backoff, then dead-lettered (and the request answered);
- a lost database or broker connection is retried and then requeued, never dead-lettered.
"""

import asyncio
import contextlib
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitMessage

from pipelines import headers as h
from pipelines import telemetry
from pipelines.aggregate import Aggregate
from pipelines.context import Context, dump_record, dump_result
from pipelines.contracts import Contract
from pipelines.errors import (
    ConcurrencyError,
    Forbidden,
    HandlerFailed,
    PlatformError,
    PolicyViolation,
    Timeout,
    ValidationError,
)
from pipelines.eventstore import (
    CommandRecord,
    RecordedEvent,
    StoredResult,
)
from pipelines.identity import Caller
from pipelines.messages import Incoming, Reply, decode
from pipelines.querycache import Cached, ReadModel, keyed_value
from pipelines.retry import INFRASTRUCTURE_ERRORS, backoff_delay
from pipelines.runtime import Runtime

HandlerFn = Callable[[Any, Context], Awaitable[Any]]
Policy = Callable[[Any, Context], Awaitable[bool | None] | bool | None]


@dataclass(frozen=True)
class Handler:
    contract: type[Contract]
    fn: HandlerFn
    policies: tuple[Policy, ...] = ()
    result: type[Any] | None = None
    subscriber: str | None = None  # event handlers: the name of their queue
    reads: ReadModel | None = None  # queries: the projection they read
    cache: Cached | None = None  # queries: how their results are cached


class Exhausted(Exception):
    def __init__(self, cause: BaseException, attempts: int) -> None:
        super().__init__(str(cause))
        self.cause, self.attempts = cause, attempts


async def run_policies(policies: Sequence[Policy], message: Any, ctx: Context) -> None:
    for policy in policies:
        verdict = policy(message, ctx)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is False:
            name = getattr(policy, "__name__", "policy")
            raise PolicyViolation(f"{ctx.message_type} refused by policy {name}")


def check_permissions(contract: type[Contract], caller: Caller | None) -> None:
    required = contract.__permissions__
    if required and (caller is None or not caller.has_all(required)):
        missing = sorted(set(required) - (caller.permissions if caller else set()))
        raise Forbidden(
            f"{contract.message_type()} requires {', '.join(required)}",
            {"required": list(required), "missing": missing},
        )


class Processor:
    """Runs one handler for each delivery of its queue, with retries and dead-lettering."""

    def __init__(self, runtime: Runtime, handler: Handler, queue: str) -> None:
        self.rt = runtime
        self.handler = handler
        self.queue = queue
        self.message_type = handler.contract.message_type()
        self.telemetry = telemetry.MessageTelemetry(
            runtime.service, queue, self.message_type, handler.contract.__kind__
        )

    async def __call__(self, message: RabbitMessage) -> None:
        raw: AbstractIncomingMessage = message.raw_message
        try:
            await self._handle(raw)
        except INFRASTRUCTURE_ERRORS:
            # The effects are committed but the reply or the ack could not be sent: the
            # broker delivers the message again (idempotency answers it), never dead-letter it.
            self.rt.log.warning("lost the broker while finishing a message from %s", self.queue)
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS):  # no channel: requeued anyway
                await raw.nack(requeue=True)
        except Exception:
            # A fault outside the handler (a broken message, a platform bug): never leave the
            # message unacknowledged, park it in its dead-letter queue for inspection.
            self.rt.log.exception("cannot process a message from %s", self.queue)
            await raw.reject(requeue=False)

    async def _handle(self, raw: AbstractIncomingMessage) -> None:
        incoming = Incoming.from_raw(raw)
        with self.telemetry.consuming(incoming) as consumed:
            try:
                outcome = await self._with_retries(incoming)
            except Exhausted as exc:
                if isinstance(exc.cause, INFRASTRUCTURE_ERRORS):
                    consumed.code = "REQUEUED"
                    await raw.nack(requeue=True)
                    return
                await self.rt.dead_letter(raw, self.queue, exc.cause, exc.attempts)
                outcome = Reply.error(
                    HandlerFailed(f"{self.message_type} failed: {exc.cause}"),
                    incoming.correlation_id,
                )
            consumed.answered(outcome)
            await self.finish(incoming, outcome)
            await raw.ack()

    async def _with_retries(self, incoming: Incoming) -> Reply:
        attempts = max(1, self.rt.settings.retry_attempts)
        for attempt in range(1, attempts + 1):
            try:
                with self.telemetry.handling(attempt):
                    return await self.process(incoming)
            except PlatformError as exc:
                return await self.refuse(incoming, exc)
            except Exception as exc:
                if attempt == attempts:
                    raise Exhausted(exc, attempt) from exc
                self.rt.log.warning(
                    "%s attempt %d/%d failed: %r",
                    self.message_type,
                    attempt,
                    attempts,
                    exc,
                    extra={"correlationId": incoming.correlation_id},
                )
                await asyncio.sleep(backoff_delay(self.rt.settings, attempt))
        raise AssertionError("unreachable")

    def context(self, incoming: Incoming, caller: Caller | None) -> Context:
        assert self.rt.store is not None
        telemetry.set_user(caller.user_id if caller else None)
        return Context(
            service=self.rt.service,
            message_type=self.message_type,
            message_id=incoming.message_id or incoming.correlation_id,
            correlation_id=incoming.correlation_id,
            caller=caller,
            store=self.rt.store,
            causation_id=incoming.causation_id,
            traceparent=telemetry.current_traceparent() or incoming.header(h.TRACEPARENT),
            sender=self.rt.sender(incoming),
            settings=self.rt.settings,
        )

    async def process(self, incoming: Incoming) -> Reply:
        raise NotImplementedError

    async def refuse(self, incoming: Incoming, exc: PlatformError) -> Reply:
        if isinstance(exc, ValidationError):  # bad input, often undecodable: no handler saw it
            self.rt.log.warning(
                "refused %s: %s",
                self.message_type,
                exc.message,
                extra={"correlationId": incoming.correlation_id, "details": exc.details},
            )
        return Reply.error(exc, incoming.correlation_id)

    async def finish(self, incoming: Incoming, outcome: Reply) -> None:
        with self.telemetry.replying(incoming):
            await self.rt.reply(incoming, outcome)


class QueryProcessor(Processor):
    async def process(self, incoming: Incoming) -> Reply:
        query = decode(self.handler.contract, incoming.body)
        caller = self.rt.identify(incoming)
        check_permissions(self.handler.contract, caller)
        ctx = self.context(incoming, caller)
        await run_policies(self.handler.policies, query, ctx)
        min_position = int(incoming.header(h.MIN_POSITION) or 0)
        reads = self.handler.reads
        if reads is not None and min_position:
            await self._wait_for(reads.name, min_position)
        if reads is None:
            return Reply(dump_result(await self.handler.fn(query, ctx)).encode())
        if self.handler.cache is not None and self.rt.cache is not None:
            return await self._cached(query, ctx, reads, self.handler.cache, min_position)
        assert self.rt.positions is not None
        position = await self.rt.positions.current(reads.name)
        body = dump_result(await self.handler.fn(query, ctx)).encode()
        return Reply(body, read_position=position)

    async def _wait_for(self, projection: str, position: int) -> None:
        assert self.rt.positions is not None
        timeout = self.rt.settings.read_your_writes_timeout
        if not await self.rt.positions.wait(projection, position, timeout):
            raise Timeout(
                f"{projection} has not reached position {position} within {timeout:g}s",
                {"projection": projection, "minPosition": position},
            )

    async def _cached(
        self, query: Contract, ctx: Context, reads: ReadModel, cache: Cached, min_position: int
    ) -> Reply:
        assert self.rt.cache is not None and self.rt.positions is not None
        base = self.rt.cache.base_key(
            self.rt.service,
            self.message_type,
            query.model_dump_json().encode(),
            ctx.caller,
            shared=cache.shared,
        )
        events = [e.message_type() for e in cache.invalidating(reads)]
        counters = self.rt.cache.counters(reads.name, events, keyed_value(cache, query))
        key, hit = await self.rt.cache.lookup(base, counters)
        if hit is not None and hit.position >= min_position:
            return Reply(hit.body, cache="hit", read_position=hit.position)
        position = await self.rt.positions.current(reads.name)
        body = dump_result(await self.handler.fn(query, ctx)).encode()
        await self.rt.cache.store(key, cache.ttl, position, body)
        return Reply(body, cache="miss", read_position=position)


class CommandProcessor(Processor):
    """Handles a command; a repeated command id gets the first result, its events appended once.

    The first append of a command id records it in the same statement as the events, so that
    record decides: a repeat fails to record (or fails earlier, in its handler or policies, on
    the state the first one left) and is answered with the stored result. The usual case, a
    new id, costs no lookup, and no connection is held while the handler runs.
    """

    async def process(self, incoming: Incoming) -> Reply:
        assert self.rt.store is not None
        self.rt.expire_command_results_now_and_then()
        try:
            return await self._process(incoming)
        except Exception:
            if incoming.message_id and (
                done := await self.rt.store.command_result(incoming.message_id)
            ):
                return _stored(done)
            raise

    async def _process(self, incoming: Incoming) -> Reply:
        command = decode(self.handler.contract, incoming.body)
        caller = self.rt.identify(incoming)
        check_permissions(self.handler.contract, caller)
        retries = self.rt.settings.concurrency_retries
        for attempt in range(retries + 1):
            try:
                return await self._decide(incoming, command, caller)
            except ConcurrencyError:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    async def _decide(self, incoming: Incoming, command: Contract, caller: Caller | None) -> Reply:
        """Run policies and handler on fresh state, then append what it recorded."""
        assert self.rt.store is not None
        ctx = self.context(incoming, caller)
        await run_policies(self.handler.policies, command, ctx)
        outcome = await self.handler.fn(command, ctx)
        result = dump_result(outcome)
        record = (
            CommandRecord(incoming.message_id, self.message_type, dump_record(outcome))
            if incoming.message_id
            else None
        )
        position = await self.rt.store.append(
            ctx.new_events(),
            correlation_id=incoming.correlation_id,
            causation_id=incoming.message_id,
            command=record,
        )
        for aggregate in ctx.snapshots_due():
            self.rt.spawn(self._snapshot(aggregate))
        return Reply(result.encode(), position=position)

    async def _snapshot(self, aggregate: Aggregate) -> None:
        assert self.rt.store is not None
        await self.rt.store.save_snapshot(
            aggregate.aggregate_type, aggregate.id, aggregate.version, aggregate.model_dump_json()
        )


def _stored(done: StoredResult) -> Reply:
    return Reply(json.dumps(done.result).encode(), position=done.position)


class EventProcessor(Processor):
    """Delivers an event to one subscriber at most once, however often the bus redelivers it."""

    async def process(self, incoming: Incoming) -> Reply:
        assert self.rt.store is not None and self.rt.pool is not None
        subscriber = self.handler.subscriber
        event_id = incoming.header(h.EVENT_ID)
        if event_id is None:
            raise ValidationError("event without an x-event-id header")
        if await self.rt.pool.fetchval(
            "SELECT 1 FROM processed_events WHERE subscriber = $1 AND event_id = $2::uuid",
            subscriber,
            event_id,
        ):
            return Reply(b"")
        event = decode(self.handler.contract, incoming.body)
        ctx = self.context(incoming, None)
        ctx.causation_id = event_id
        ctx.event = recorded_from_headers(incoming, event)
        await self.handler.fn(event, ctx)
        new_events = ctx.new_events()
        async with self.rt.pool.acquire() as conn, conn.transaction():
            if new_events:
                await self.rt.store.append(
                    new_events,
                    correlation_id=incoming.correlation_id,
                    causation_id=event_id,
                    conn=conn,
                )
            await conn.execute(
                "INSERT INTO processed_events (subscriber, event_id) VALUES ($1, $2::uuid) "
                "ON CONFLICT DO NOTHING",
                subscriber,
                event_id,
            )
        if new_events:
            self.rt.store.committed()
        return Reply(b"")

    async def refuse(self, incoming: Incoming, exc: PlatformError) -> Reply:
        """An event that fails its contract or the handler's rules cannot succeed later."""
        raise Exhausted(exc, 1) from exc

    async def finish(self, incoming: Incoming, outcome: Reply) -> None:
        return None


def recorded_from_headers(incoming: Incoming, event: Contract) -> RecordedEvent:
    occurred = incoming.header(h.OCCURRED_AT)
    return RecordedEvent(
        position=int(incoming.header(h.GLOBAL_POSITION) or 0),
        event_id=uuid.UUID(incoming.header(h.EVENT_ID)),
        aggregate_type=incoming.header(h.AGGREGATE_TYPE) or "",
        aggregate_id=incoming.header(h.AGGREGATE_ID) or "",
        version=int(incoming.header(h.EVENT_VERSION) or 0),
        event_type=event.message_type(),
        data=event.model_dump(by_alias=True),
        metadata={"service": incoming.header(h.SERVICE_NAME)},
        occurred_at=datetime.fromisoformat(occurred) if occurred else datetime.min,
        correlation_id=incoming.correlation_id,
        causation_id=incoming.causation_id,
    )
