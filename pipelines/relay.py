"""The event relay: publishes the log to `exchange.platform.events`, in order, at least once.

One relay per database leads (an advisory lock), wherever it runs: inside every service process
by default, or alone with `banyan relay`. It wakes on the NOTIFY an append sends at commit and
polls as a fallback; its checkpoint moves only after the broker confirmed the batch, so a crash
republishes at most one batch, which subscribers drop by event id.

Every read and checkpoint goes through the session that holds the lock: a leader whose session
ended (a failover, a network cut, `pg_terminate_backend`) fails its next read and steps down
before it publishes anything more, while another relay takes the lock.
"""

import asyncio
import logging
from typing import Any

import aio_pika
import asyncpg

from pipelines import headers as h
from pipelines import telemetry
from pipelines.database import connect
from pipelines.event_signing import EventSignatures
from pipelines.leadership import keep_leading
from pipelines.messages import encode_body
from pipelines.notifier import Notifier, Wakeup
from pipelines.settings import Settings
from pipelines.topology import EVENTS_EXCHANGE, event_routing_key

log = logging.getLogger("banyan.relay")

# the next events below the readable bound, in one round trip (see EventStore.read_page)
READ_BATCH = (
    "SELECT position, event_id, aggregate_type, aggregate_id, version, event_type, data::text, "
    "metadata, occurred_at, correlation_id, causation_id, schema_version "
    "FROM read_log_as_written($1, $2, NULL) "
    "WHERE position IS NOT NULL"
)


def event_message(row: asyncpg.Record, signatures: EventSignatures) -> tuple[str, aio_pika.Message]:
    meta: dict[str, Any] = row["metadata"] or {}
    service = meta.get("service", "unknown")
    headers: dict[str, Any] = {
        h.EVENT_ID: str(row["event_id"]),
        h.MESSAGE_TYPE: row["event_type"],
        h.SERVICE_NAME: service,
        h.AGGREGATE_TYPE: row["aggregate_type"],
        h.AGGREGATE_ID: row["aggregate_id"],
        h.EVENT_VERSION: row["version"],
        h.SCHEMA_VERSION: row["schema_version"],
        h.GLOBAL_POSITION: row["position"],
        h.OCCURRED_AT: row["occurred_at"].isoformat(),
        h.CORRELATION_ID: row["correlation_id"] or "",
        h.CAUSATION_ID: row["causation_id"] or "",
        h.RETRY_COUNT: 0,
    }
    if "traceparent" in meta:
        headers[h.TRACEPARENT] = meta["traceparent"]
    body, encoding = encode_body(row["data"].encode())
    headers[h.EVENT_SIGNATURE] = signatures.sign(headers, body, encoding)
    message = aio_pika.Message(
        body,
        headers=headers,
        content_encoding=encoding,
        message_id=str(row["event_id"]),
        correlation_id=row["correlation_id"],
        content_type="application/json",
        type=row["event_type"],
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    return event_routing_key(service, row["event_type"]), message


class EventRelay:
    def __init__(
        self,
        settings: Settings,
        channel: aio_pika.abc.AbstractChannel,
        name: str = "relay",
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.name = name
        self.position = 0
        self._wake = Wakeup(settings, notifier)
        self.is_leader = asyncio.Event()
        self.signatures = EventSignatures.of(settings)

    async def run(self) -> None:
        """Lead when the lock is free, publish until cancelled; survive lost connections."""
        await keep_leading("relay", self._lead, self.is_leader, self.settings.relay_poll_interval)

    async def _lead(self) -> None:
        conn = await connect(self.settings)
        try:
            key = f"{self.settings.database_schema}.{self.name}"
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
                await asyncio.sleep(self.settings.relay_poll_interval)
            await self._wake.listen(conn)
            self.position = await self._checkpoint(conn)
            exchange = await self.channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
            self.is_leader.set()
            log.info("relay leading from position %d", self.position)
            while True:
                if not await self.publish_batch(conn, exchange):
                    await self._wake.wait()
                    self._wake.clear()
        finally:
            self.is_leader.clear()
            conn.terminate()  # never waits: a graceful close can hang a cancelled task

    async def _checkpoint(self, conn: asyncpg.Connection) -> int:
        position = await conn.fetchval(
            "INSERT INTO relay_positions (name) VALUES ($1) ON CONFLICT (name) "
            "DO UPDATE SET name = excluded.name RETURNING position",
            self.name,
        )
        return int(position)

    async def publish_batch(
        self, conn: asyncpg.Connection, exchange: aio_pika.abc.AbstractExchange
    ) -> int:
        rows = await conn.fetch(READ_BATCH, self.position, self.settings.relay_batch_size)
        if not rows:
            return 0
        with telemetry.relaying(rows):
            await asyncio.gather(
                *(
                    exchange.publish(message, routing_key=key, mandatory=False)
                    for key, message in (event_message(row, self.signatures) for row in rows)
                )
            )
        last = rows[-1]["position"]
        await conn.execute(
            "UPDATE relay_positions SET position = $2, updated_at = now() WHERE name = $1",
            self.name,
            last,
        )
        self.position = last
        return len(rows)
