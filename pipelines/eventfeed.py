"""A process's own view of the event bus: one exclusive queue per process.

Every gateway instance must see every registry change (to rebuild its routes) and every
event its WebSocket and GraphQL subscribers asked for, and every process every revocation of
an access token (`pipelines.revocation`), so each binds its own server-named, auto-deleted
queue and adds bindings as it needs them. (Competing consumers of a service's durable queues
would each see only some of them.) It passes on only the events the event log's relay signed
(`pipelines.event_signing`): the others are dropped, logged and counted in
`banyan_forged_events_total`, before they are decompressed.
"""

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from pipelines import headers as h
from pipelines.event_signing import EventSignatures
from pipelines.messages import Incoming
from pipelines.rabbitnodes import connect_rabbitmq
from pipelines.telemetry.metrics import METRICS
from pipelines.topology import EVENTS_EXCHANGE

log = logging.getLogger("banyan.events")
Listener = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[None]]


class EventFeed:
    def __init__(self, url: str, signatures: EventSignatures, process: str) -> None:
        self.url = url
        self.signatures = signatures
        self.process = process  # the forged events it drops are counted under its name
        self.listeners: list[Listener] = []
        self._bound: set[str] = set()
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None

    async def start(self, routing_keys: list[str]) -> None:
        self._connection = await connect_rabbitmq(self.url)
        channel = await self._connection.channel()
        await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in routing_keys:
            await self.bind(key)
        await self._queue.consume(self._deliver, no_ack=True)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def bind(self, routing_key: str) -> None:
        if routing_key in self._bound or self._queue is None:
            return
        await self._queue.bind(EVENTS_EXCHANGE, routing_key)
        self._bound.add(routing_key)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        forgery = self.signatures.forgery(headers, message.body, message.content_encoding)
        if forgery is not None:
            METRICS.forged_events.labels(self.process, forgery).inc()
            log.warning("dropped a forged event (%s) from %s", forgery, message.routing_key)
            return
        incoming = Incoming.from_raw(message)
        event_type = incoming.header(h.MESSAGE_TYPE) or ""
        try:
            data = json.loads(incoming.body)
        except ValueError:
            log.warning("dropping an event that is not JSON: %s", event_type)
            return
        for listener in self.listeners:
            try:
                await listener(event_type, data, incoming.headers)
            except Exception:
                log.exception("event listener failed on %s", event_type)
