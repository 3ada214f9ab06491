"""Resources one service process shares between its handlers: database, broker channels, keys."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aio_pika
from faststream.rabbit import Channel, RabbitBroker

from pipelines import headers as h
from pipelines.calls import Calls
from pipelines.context import Sender
from pipelines.contracts import Contract
from pipelines.database import Pool
from pipelines.event_signing import EventSignatures, ForgedEvent, Forgery
from pipelines.eventstore import EventStore
from pipelines.identity import Caller, TokenCodec
from pipelines.messages import Incoming, Reply, encode_body, failure_fields, redeliveries, resent
from pipelines.notifier import Notifier
from pipelines.pacing import Pacer
from pipelines.positions import PositionWatcher
from pipelines.publishing import json_properties, publish
from pipelines.querycache import QueryCache
from pipelines.replica import ReadReplica
from pipelines.revocation import Revocations, TokenRevoked
from pipelines.rpc import Response, RpcClient
from pipelines.service_identity import ServiceIdentity
from pipelines.settings import Settings
from pipelines.telemetry.metrics import METRICS
from pipelines.topology import DEAD_LETTER_EXCHANGE, dead_letter_queue_name

# Replies need no confirmation: a lost reply is answered again on redelivery (idempotency).
REPLY_CHANNEL = Channel(publisher_confirms=False)
# Dead letters and relayed events must be confirmed before the original is acknowledged.
CONFIRM_CHANNEL = Channel(publisher_confirms=True)


class Runtime:
    def __init__(self, calls: Calls, settings: Settings, broker: RabbitBroker) -> None:
        self.service = calls.service
        self.calls = calls
        self.settings = settings
        self.broker = broker
        self.tokens = TokenCodec(settings)
        self.signatures = EventSignatures.of(settings)
        self.identity = ServiceIdentity(calls, settings, self.tokens)
        self.revocations = Revocations(settings.jwt_expiration)
        self.log = logging.getLogger(f"banyan.{self.service}")
        self.pool: Pool | None = None
        self.store: EventStore | None = None
        self.cache: QueryCache | None = None
        self.positions: PositionWatcher | None = None
        self.replica: ReadReplica | None = None  # DATABASE_READ_URL's standby, for queries
        self.rpc: RpcClient | None = None  # requests to other services
        self._record_sweeps = Pacer()

    def attach(self, pool: Pool, notifier: Notifier) -> None:
        self.pool = pool
        self.store = EventStore(pool, notifier)

    def sender(self, incoming: Incoming) -> "Sender":
        """How a handler's context sends the contracts this service declares it calls: as the
        caller, or as this service."""
        user_token = incoming.header(h.USER_TOKEN)

        async def send(
            service: str, message: Contract, correlation_id: str, causation_id: str,
            key: str | None, timeout: float,
        ) -> Response:  # fmt: skip
            assert self.rpc is not None
            self.calls.check(message)
            token = user_token or await self.service_token()
            return await self.rpc.send(
                service, message, token=token, timeout=timeout, message_id=key,
                correlation_id=correlation_id, **{h.CAUSATION_ID: causation_id},
            )  # fmt: skip

        return send

    async def service_token(self) -> str:
        """A short-lived token for this service itself (messages it sends on its own), holding
        the permissions of its `calls=` and no others."""
        return await self.identity.token(self.rpc)

    def identify(self, incoming: Incoming) -> Caller | None:
        token = incoming.header(h.USER_TOKEN)
        if not token:
            return None
        caller = self.tokens.verify(token)
        if self.revocations.refuses(caller):
            raise TokenRevoked()
        return caller

    async def channel(self, kind: Channel) -> aio_pika.abc.AbstractRobustChannel:
        channel: aio_pika.abc.AbstractRobustChannel
        channel = await self.broker.config.channel_manager.get_channel(kind)
        return channel

    async def reply(self, incoming: Incoming, reply: Reply) -> None:
        if not incoming.reply_to:
            return
        headers: dict[str, Any] = {
            h.STATUS: "ok" if reply.ok else "error",
            h.CORRELATION_ID: incoming.correlation_id,
            h.CAUSATION_ID: incoming.message_id or "",
            h.SERVICE_NAME: self.service,
            h.MESSAGE_TYPE: incoming.header(h.MESSAGE_TYPE) or "",
            h.RETRY_COUNT: 0,
        }
        if reply.position is not None:
            headers[h.EVENT_POSITION] = reply.position
        if reply.cache is not None:
            headers[h.CACHE] = reply.cache
        if reply.read_position is not None:
            headers[h.READ_POSITION] = reply.read_position
        channel = await self.channel(REPLY_CHANNEL)
        body, encoding = encode_body(reply.body)
        properties = json_properties(headers, encoding, incoming.reply_correlation)
        # not mandatory: an unroutable reply is dropped (its caller is gone)
        await publish(channel, incoming.reply_to, body, properties, mandatory=False)

    async def dead_letter(
        self,
        raw: aio_pika.abc.AbstractIncomingMessage,
        queue: str,
        error: BaseException,
        attempts: int,
    ) -> None:
        """Park a message that kept failing in `dlq.{queue}` with the error in its headers."""
        headers = dict(raw.headers or {})
        headers.update(
            {
                h.ERROR_TYPE: type(error).__name__,
                h.ERROR_MESSAGE: str(error)[:2000],
                h.RETRY_COUNT: attempts,
                h.ORIGINAL_QUEUE: queue,
                h.FAILED_AT: datetime.now(UTC).isoformat(),
            }
        )
        channel = await self.channel(CONFIRM_CHANNEL)
        exchange = await channel.get_exchange(DEAD_LETTER_EXCHANGE, ensure=False)
        await exchange.publish(resent(raw, headers), routing_key=dead_letter_queue_name(queue))
        self.log.error(
            "dead-lettered %s after %d attempts: %s",
            queue,
            attempts,
            error,
            exc_info=error,
            extra={**failure_fields(raw), "retryCount": attempts, "queue": queue},
        )

    async def refuse_forged(
        self, raw: aio_pika.abc.AbstractIncomingMessage, queue: str, forgery: Forgery
    ) -> None:
        """Park an event the log's relay did not sign in `dlq.{queue}`, with the reason; counted
        apart from handler errors (the service is not at fault)."""
        METRICS.forged_events.labels(self.service, forgery).inc()
        await self.dead_letter(raw, queue, ForgedEvent(forgery), attempts=0)

    async def requeue(
        self, raw: aio_pika.abc.AbstractIncomingMessage, queue: str, counted: bool
    ) -> None:
        """Put `raw` back at the end of `queue`, counting the redelivery in its headers if
        `counted`."""
        headers = {**(raw.headers or {}), h.REDELIVERY_COUNT: redeliveries(raw) + counted}
        channel = await self.channel(CONFIRM_CHANNEL)
        await channel.default_exchange.publish(resent(raw, headers, reply_to=True), queue)
        await raw.ack()

    async def database_answers(self) -> bool:
        """Whether the event log's database answers now (so an outage explains no failure)."""
        if self.pool is None:
            return True
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 2.0)
        except Exception:
            return False
        return True

    def expire_records_now_and_then(self) -> None:
        """In the background, forget idempotency records (command results, processed events)
        past their retention: processes that add records keep the tables bounded, at most one
        sweep per interval each."""
        if self.store is None or not self._record_sweeps.due():
            return
        if (retention := self.settings.command_result_retention) > 0:
            self.spawn(self.store.expire_command_results(retention))
        if (retention := self.settings.processed_event_retention) > 0:
            self.spawn(self.store.expire_processed_events(retention))

    def spawn(self, coro: Any) -> None:
        """Run follow-up work (snapshots) without delaying the reply; failures are logged."""
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._report)

    def _report(self, task: "asyncio.Future[Any]") -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("background task failed: %s", task.exception())
