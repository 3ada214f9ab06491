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
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aio_pika.abc import AbstractIncomingMessage

from pipelines import headers as h
from pipelines import telemetry
from pipelines.aggregate import Aggregate
from pipelines.context import UNKNOWN_ADDRESS, Context, dump_result, kept_result
from pipelines.contracts import Contract
from pipelines.errors import (
    ConcurrencyError,
    Conflict,
    Forbidden,
    HandlerFailed,
    IdempotencyKeyReused,
    PlatformError,
    PolicyViolation,
    Timeout,
    ValidationError,
)
from pipelines.eventstore import (
    RecordedEvent,
    StoredResult,
)
from pipelines.idempotency import RecordKey, RecordKeys
from pipelines.identity import Caller
from pipelines.messages import Incoming, Reply, decode, failure_fields, redeliveries
from pipelines.querycache import Cached, ReadModel, keyed_value
from pipelines.replica import Copy
from pipelines.retry import INFRASTRUCTURE_ERRORS, backoff_delay
from pipelines.runtime import Runtime

policy_log = logging.getLogger("banyan.policies")
HandlerFn = Callable[[Any, Context], Awaitable[Any]]
Policy = Callable[[Any, Context], Awaitable[bool] | bool]


@dataclass(frozen=True)
class Handler:
    contract: type[Contract]
    fn: HandlerFn
    policies: tuple[Policy, ...] = ()
    result: type[Any] | None = None
    subscriber: str | None = None  # event handlers: the name of their queue
    reads: ReadModel | None = None  # queries: the projection they read
    cache: Cached | None = None  # queries: how their results are cached


SEEN = "SELECT 1 FROM processed_events WHERE subscriber = $1 AND event_id = $2::uuid"
RECORD_PROCESSED = (
    "INSERT INTO processed_events (subscriber, event_id) VALUES ($1, $2::uuid) "
    "ON CONFLICT DO NOTHING RETURNING true"
)
T = TypeVar("T")


async def on_fresh_state(decide: Callable[[], Awaitable[T]], retries: int) -> T:
    """Run `decide` again (on fresh state) when another writer appended to its aggregate
    first, up to `retries` times; then the ConcurrencyError stands."""
    for attempt in range(retries + 1):
        try:
            return await decide()
        except ConcurrencyError:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


class RedeliveryLimit(Exception):
    """A message went back to its queue `max_redeliveries` times without succeeding."""


def redelivery_limit(raw: AbstractIncomingMessage, cause: BaseException) -> RedeliveryLimit:
    return RedeliveryLimit(
        f"redelivered {redeliveries(raw)} times; last error {type(cause).__name__}: {cause}"
    )


class Exhausted(Exception):
    def __init__(self, cause: BaseException, attempts: int) -> None:
        super().__init__(str(cause))
        self.cause, self.attempts = cause, attempts


async def run_policies(policies: Sequence[Policy], message: Any, ctx: Context) -> None:
    """Each policy must answer True to allow; anything else refuses (fail closed)."""
    for policy in policies:
        verdict = policy(message, ctx)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is True:
            continue
        name = getattr(policy, "__name__", "policy")
        if verdict is not False:
            policy_log.error("policy %s answered %r, not True or False: refused", name, verdict)
        raise PolicyViolation(f"{ctx.message_type} refused by policy {name}")


def check_permissions(contract: type[Contract], caller: Caller | None) -> None:
    required = contract.__permissions__
    if not required or (caller is not None and caller.has_all(required)):
        return
    missing = caller.missing(required) if caller is not None else sorted(required)
    if missing:
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

    async def __call__(self, raw: AbstractIncomingMessage) -> None:
        try:
            await self._handle(raw)
        except INFRASTRUCTURE_ERRORS:
            # The effects are committed but the reply or the ack could not be sent: the
            # broker delivers the message again (idempotency answers it) once its channels
            # are back; not counted as a redelivery, the message is not at fault.
            self.rt.log.warning("lost the broker while finishing a message from %s", self.queue)
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS):  # no channel: requeued anyway
                await raw.nack(requeue=True)
        except Exception:
            # A fault outside the handler (a broken message, a platform bug): never leave the
            # message unacknowledged, park it in its dead-letter queue for inspection.
            self.rt.log.exception(
                "cannot process a message from %s", self.queue, extra=failure_fields(raw)
            )
            await raw.reject(requeue=False)

    async def _handle(self, raw: AbstractIncomingMessage) -> None:
        incoming = Incoming.from_raw(raw, self.rt.settings.max_message_bytes)
        with self.telemetry.consuming(incoming) as consumed:
            try:
                outcome = await self._with_retries(incoming)
            except Exhausted as exc:
                cause = exc.cause
                if isinstance(cause, INFRASTRUCTURE_ERRORS):
                    if await self._put_back(raw):
                        consumed.code = "REQUEUED"
                        return
                    cause = redelivery_limit(raw, cause)
                await self.rt.dead_letter(raw, self.queue, cause, exc.attempts)
                outcome = Reply.error(
                    HandlerFailed(f"{self.message_type} failed: {cause}"),
                    incoming.correlation_id,
                )
            consumed.answered(outcome)
            await self.finish(incoming, outcome)
            await raw.ack()

    async def _put_back(self, raw: AbstractIncomingMessage) -> bool:
        """Requeue a message whose handling failed for want of the database or broker; False
        when it has been back too often while the database answered: the failure is its own
        (a fault taken for an outage), and it must not loop. Failures while the database does
        not answer are an outage, and not counted."""
        counted = await self.rt.database_answers()
        if counted and redeliveries(raw) >= self.rt.settings.max_redeliveries:
            return False
        try:
            await self.rt.requeue(raw, self.queue, counted)
        except INFRASTRUCTURE_ERRORS:  # the broker is gone: it redelivers the message itself
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS):
                await raw.nack(requeue=True)
        return True

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
                    exc_info=exc,
                    extra={"correlationId": incoming.correlation_id, "retryCount": attempt,
                           "messageId": incoming.message_id, "messageType": self.message_type},
                )  # fmt: skip
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
            client_address=incoming.header(h.CLIENT_ADDRESS) or UNKNOWN_ADDRESS,
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
        query = decode(self.handler.contract, incoming)
        caller = self.rt.identify(incoming)
        check_permissions(self.handler.contract, caller)
        ctx = self.context(incoming, caller)
        await run_policies(self.handler.policies, query, ctx)
        min_position = int(incoming.header(h.MIN_POSITION) or 0)
        reads = self.handler.reads
        if reads is None:
            return Reply(dump_result(await self.handler.fn(query, ctx)).encode())
        if self.handler.cache is not None and self.rt.cache is not None:
            return await self._cached(query, ctx, reads, self.handler.cache, min_position)
        copy = await self._copy(reads.name, min_position)
        return Reply(await self._answer(query, ctx, copy), read_position=copy.position)

    async def _copy(self, projection: str, min_position: int) -> Copy:
        """The copy of `projection` to read: the standby once it has reached `min_position`,
        else the primary once it has, so read-your-writes holds across replicas."""
        replica = self.rt.replica
        if replica is not None and (copy := await replica.copy(projection, min_position)):
            return copy
        if min_position:
            await self._wait_for(projection, min_position)
        assert self.rt.positions is not None
        return Copy(await self.rt.positions.current(projection))

    async def _answer(self, query: Contract, ctx: Context, copy: Copy) -> bytes:
        ctx.replica = copy.pool
        return dump_result(await self.handler.fn(query, ctx)).encode()

    async def _wait_for(self, projection: str, position: int) -> None:
        assert self.rt.positions is not None
        timeout = self.rt.settings.read_your_writes_timeout
        if not await self.rt.positions.wait(projection, position, timeout):
            await self._refuse_beyond_the_log(position)
            raise Timeout(
                f"{projection} has not reached position {position} within {timeout:g}s",
                {"projection": projection, "minPosition": position},
            )

    async def _refuse_beyond_the_log(self, position: int) -> None:
        """A position no append has reached is not one a command answered with: a bad input."""
        assert self.rt.store is not None
        head = await self.rt.store.head_position()
        if position > head:
            raise ValidationError(
                f"X-Min-Position {position} is beyond the end of the log ({head})",
                {"minPosition": position, "head": head},
            )

    async def _cached(
        self, query: Contract, ctx: Context, reads: ReadModel, cache: Cached, min_position: int
    ) -> Reply:
        assert self.rt.cache is not None
        # A copy with the caller's writes is found before the counters are read, so a fresh
        # answer is kept under the counters its writes moved (see ProjectionRunner._published).
        recent = await self._copy(reads.name, min_position) if min_position else None
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
        copy = recent or await self._copy(reads.name, 0)
        body = await self._answer(query, ctx, copy)
        if not await self._as_recent_as_counters(reads.name, copy):
            return Reply(body, cache="miss")  # no read position: the gateway keeps it neither
        await self.rt.cache.store(key, cache.ttl, copy.position, body)
        return Reply(body, cache="miss", read_position=copy.position)

    async def _as_recent_as_counters(self, projection: str, copy: Copy) -> bool:
        """Whether an answer read from `copy` holds every change that moved the counters it
        would be kept under: from the primary, yes; from the standby, only if it had caught up
        with the primary (else a stale answer would be kept until its ttl)."""
        assert self.rt.positions is not None
        return copy.pool is None or copy.position >= await self.rt.positions.refresh(projection)


class CommandProcessor(Processor):
    """Handles a command; a repeat (same caller, operation and key) gets the first result,
    its events appended once; a repeat with another body is refused.

    The first append of a command records it in the same statement as the events, so that
    record decides: a repeat fails to record (or fails earlier, in its handler or policies, on
    the state the first one left) and is answered from the record. The usual case, a new key,
    costs no lookup, and no connection is held while the handler runs.
    """

    def __init__(self, runtime: Runtime, handler: Handler, queue: str) -> None:
        super().__init__(runtime, handler, queue)
        self.record_keys = RecordKeys(
            runtime.service, self.message_type, runtime.settings.jwt_secret
        )

    async def process(self, incoming: Incoming) -> Reply:
        assert self.rt.store is not None
        self.rt.expire_records_now_and_then()
        command = decode(self.handler.contract, incoming)
        caller = self.rt.identify(incoming)
        check_permissions(self.handler.contract, caller)
        key = incoming.message_id
        record = self.record_keys.of(key, caller, command) if key else None
        try:
            return await on_fresh_state(
                lambda: self._decide(incoming, command, caller, record),
                self.rt.settings.concurrency_retries,
            )
        except Exception:
            if record and (done := await self.rt.store.command_result(record.record_id)):
                return self._answer_again(done, record)
            raise

    async def _decide(
        self, incoming: Incoming, command: Contract, caller: Caller | None, record: RecordKey | None
    ) -> Reply:
        """Run policies and handler on fresh state, then append what it recorded."""
        assert self.rt.store is not None
        ctx = self.context(incoming, caller)
        await run_policies(self.handler.policies, command, ctx)
        outcome = await self.handler.fn(command, ctx)
        result = dump_result(outcome)
        position = await self.rt.store.append(
            ctx.new_events(),
            correlation_id=incoming.correlation_id,
            causation_id=incoming.message_id,
            command=record.record(kept_result(outcome, result)) if record else None,
        )
        await ctx.committed()
        for aggregate in ctx.snapshots_due():
            self.rt.spawn(self._snapshot(aggregate))
        return Reply(result.encode(), position=position)

    def _answer_again(self, done: StoredResult, record: RecordKey) -> Reply:
        if done.fingerprint != record.fingerprint:
            raise IdempotencyKeyReused(
                f"this Idempotency-Key was used for another {self.message_type}: "
                "send a new key for a new request"
            )
        if done.withheld:
            raise Conflict(
                f"this {self.message_type} was already handled, and its result held secrets, "
                "which are never kept: send it again with a new Idempotency-Key"
            )
        return Reply(json.dumps(done.result).encode(), position=done.position)

    async def _snapshot(self, aggregate: Aggregate) -> None:
        assert self.rt.store is not None
        await self.rt.store.save_snapshot(
            aggregate.aggregate_type,
            aggregate.id,
            aggregate.version,
            aggregate.model_dump_json(),
            aggregate.snapshot_shape,
        )


class EventProcessor(Processor):
    """Delivers an event to one subscriber at most once, however often the bus redelivers it,
    and only if the event log's relay signed it as it comes (`pipelines.event_signing`)."""

    async def _handle(self, raw: AbstractIncomingMessage) -> None:
        headers = raw.headers or {}
        signatures = self.rt.signatures
        forgery = signatures.forgery(headers, raw.body, raw.content_encoding, self.message_type)
        if forgery is None:
            await super()._handle(raw)
            return
        await self.rt.refuse_forged(raw, self.queue, forgery)
        await raw.ack()

    async def process(self, incoming: Incoming) -> Reply:
        assert self.rt.pool is not None
        self.rt.expire_records_now_and_then()
        event_id = incoming.header(h.EVENT_ID)
        if event_id is None:
            raise ValidationError("event without an x-event-id header")
        if await self.rt.pool.fetchval(SEEN, self.handler.subscriber, event_id):
            return Reply(b"")  # a redelivery: spare the handler
        event = decode(self.handler.contract, incoming)
        await on_fresh_state(
            lambda: self._decide(incoming, event, event_id), self.rt.settings.concurrency_retries
        )
        return Reply(b"")

    async def _decide(self, incoming: Incoming, event: Contract, event_id: str) -> None:
        """Run the handler, then record the event id and append what it recorded, together.

        The id goes first: a concurrent delivery of the same event waits on it, then finds it
        taken and appends nothing.
        """
        assert self.rt.store is not None and self.rt.pool is not None
        ctx = self.context(incoming, None)
        ctx.causation_id = event_id
        ctx.event = recorded_from_headers(incoming, event)
        await self.handler.fn(event, ctx)
        new_events = ctx.new_events()
        async with self.rt.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(RECORD_PROCESSED, self.handler.subscriber, event_id):
                return
            if new_events:
                await self.rt.store.append(
                    new_events,
                    correlation_id=incoming.correlation_id,
                    causation_id=event_id,
                    conn=conn,
                )
        if new_events:
            self.rt.store.committed()
        await ctx.committed()

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
        schema_version=event.__version__,  # `data` is the event as its class reads it
    )
