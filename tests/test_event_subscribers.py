"""Event subscribers: each event's effects are recorded once, however the bus delivers it."""

import uuid

import aio_pika
from aio_pika.abc import HeadersType

from pipelines import headers as h
from pipelines.event_signing import EventSignatures
from pipelines.telemetry.metrics import METRICS
from pipelines.topology import event_queue_name
from tests import sample
from tests.conftest import eventually

DAY = 86_400
TALLY_QUEUE = event_queue_name("sample", sample.Nudged)


async def deliver(settings, event: sample.Nudged, event_id: str, copies: int = 1) -> None:
    """Publish `copies` deliveries of one event, as an at-least-once bus may (signed as the
    relay signs it)."""
    body = event.to_json()
    headers: HeadersType = {h.EVENT_ID: event_id, h.MESSAGE_TYPE: "Nudged"}
    headers[h.EVENT_SIGNATURE] = EventSignatures.of(settings).sign(headers, body, None)
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel()
        for _ in range(copies):
            await channel.default_exchange.publish(
                aio_pika.Message(body, headers=headers, message_id=event_id),
                routing_key=TALLY_QUEUE,
            )


async def tallied(sample_service, tally_id: str) -> int:
    count: int = await sample_service.runtime.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'Tallied' AND data->>'tallyId' = $1",
        tally_id,
    )
    return count


async def handled(sample_service, event_ids: list[str]) -> bool:
    count = await sample_service.runtime.pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE subscriber = 'sample' "
        "AND event_id = ANY($1::uuid[])",
        event_ids,
    )
    return bool(count == len(event_ids))


def finished() -> float:
    """Deliveries of Nudged the sample service has finished with (handled, or skipped)."""
    for metric in METRICS.handler_seconds.collect():
        for sample_ in metric.samples:
            if sample_.name.endswith("_count") and sample_.labels["message_type"] == "Nudged":
                return sample_.value
    return 0.0


async def test_two_deliveries_of_one_event_at_once_append_once(settings, sample_service) -> None:
    tally_id, event_id = uuid.uuid4().hex, str(uuid.uuid4())
    event = sample.Nudged(tally_id=tally_id, linger=0.3, fresh=True)
    before = finished()
    await deliver(settings, event, event_id, copies=2)  # both in the handler at once
    await eventually(lambda: finished() == before + 2, what="both deliveries to be finished")
    assert await handled(sample_service, [event_id])
    assert await tallied(sample_service, tally_id) == 1


async def test_a_version_clash_in_a_subscriber_is_retried(settings, sample_service) -> None:
    tally_id = uuid.uuid4().hex
    event_ids = [str(uuid.uuid4()) for _ in range(2)]
    for event_id in event_ids:  # both read version 0 of one tally, then both record
        await deliver(settings, sample.Nudged(tally_id=tally_id, linger=0.3), event_id)
    await eventually(lambda: handled(sample_service, event_ids), what="both events to be handled")
    assert await tallied(sample_service, tally_id) == 2


async def test_records_of_handled_events_expire(sample_service) -> None:
    store = sample_service.runtime.store
    ages = {str(uuid.uuid4()): age for age in (2 * DAY, 2 * DAY + 1, DAY - 60)}
    for event_id, age in ages.items():
        await store.pool.execute(
            "INSERT INTO processed_events (subscriber, event_id, processed_at) "
            "VALUES ('expiry', $1::uuid, now() - make_interval(secs => $2))",
            event_id,
            float(age),
        )
    await store.expire_processed_events(DAY, batch=1)
    kept = await store.pool.fetch(
        "SELECT event_id::text FROM processed_events WHERE subscriber = 'expiry'"
    )
    assert {r["event_id"] for r in kept} == {e for e, age in ages.items() if age < DAY}
