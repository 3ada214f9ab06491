"""Gauges that no message updates, sampled every `METRICS_INTERVAL` in each service process:
the depth of its queues and of their dead-letter queues, and the lag of the projections it
runs (those it leads)."""

import asyncio
import logging
from typing import TYPE_CHECKING

import aio_pika
from faststream.rabbit import Channel

from pipelines.telemetry.metrics import METRICS
from pipelines.topology import dead_letter_queue_name

if TYPE_CHECKING:
    from pipelines.instance import ServiceInstance

# passive declares only; a channel of its own, so that an error closes nothing else
SAMPLING_CHANNEL = Channel(on_return_raises=True)
log = logging.getLogger("banyan.telemetry")


async def sample_forever(instance: "ServiceInstance") -> None:
    while True:
        try:
            await sample(instance)
        except Exception as exc:  # a sampling miss must not stop the service
            log.debug("sampling gauges failed: %r", exc)
        await asyncio.sleep(instance.settings.metrics_interval)


async def sample(instance: "ServiceInstance") -> None:
    service = instance.service.name
    channel = await instance.runtime.channel(SAMPLING_CHANNEL)
    for queue in instance.queues:
        METRICS.queue_depth.labels(service, queue).set(await _depth(channel, queue))
        dlq = dead_letter_queue_name(queue)
        METRICS.dead_letters.labels(service, dlq).set(await _depth(channel, dlq))
    if instance.runtime.store is not None:
        oldest = await instance.runtime.store.oldest_append_seconds()
        METRICS.oldest_append.labels(service).set(oldest)
    leading = {n: r for n, r in instance.runners.items() if r.is_leader.is_set()}
    if leading and instance.runtime.store is not None:
        head = await instance.runtime.store.head_position()
        for name, runner in leading.items():
            METRICS.projection_lag.labels(service, name).set(max(0, head - runner.position))


async def _depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)
