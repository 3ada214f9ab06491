"""Gauges that no message updates, sampled every `METRICS_INTERVAL` in each service process:
the depth of its queues and of their dead-letter queues, the lag of the relay and of the
projections it runs (where they lead), in events and in seconds; and the event loop's lag."""

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aio_pika
from faststream.rabbit import Channel

from pipelines.telemetry.lag import seconds_behind
from pipelines.telemetry.metrics import METRICS
from pipelines.topology import dead_letter_queue_name

if TYPE_CHECKING:
    from pipelines.instance import ServiceInstance

# passive declares only; a channel of its own, so that an error closes nothing else
SAMPLING_CHANNEL = Channel(on_return_raises=True)
log = logging.getLogger("banyan.telemetry")
LOOP_PROBE = 0.5  # seconds between two looks at the event loop's lag
Sampler = Callable[["ServiceInstance"], Awaitable[None]]


def every_interval(sampler: Sampler) -> Sampler:
    """`sampler(instance)` every `METRICS_INTERVAL` for as long as the instance runs: a miss
    is logged (at debug) and never stops the service."""

    @functools.wraps(sampler)
    async def forever(instance: "ServiceInstance") -> None:
        while True:
            try:
                await sampler(instance)
            except Exception as exc:
                log.debug("sampling %s failed: %r", sampler.__name__, exc)
            await asyncio.sleep(instance.settings.metrics_interval)

    return forever


async def sample(instance: "ServiceInstance") -> None:
    service = instance.service.name
    channel = await instance.runtime.channel(SAMPLING_CHANNEL)
    for queue in instance.queues:
        METRICS.queue_depth.labels(service, queue).set(await _depth(channel, queue))
        dlq = dead_letter_queue_name(queue)
        METRICS.dead_letters.labels(service, dlq).set(await _depth(channel, dlq))
    store = instance.runtime.store
    if store is None:
        return
    METRICS.oldest_append.labels(service).set(await store.oldest_append_seconds())
    relay = instance.relay
    leading = [r for r in instance.runners.values() if r.is_leader.is_set()]
    if not leading and not (relay is not None and relay.is_leader.is_set()):
        return  # no lag of this process's own to report
    head = await store.head_position()
    if relay is not None and relay.is_leader.is_set():
        METRICS.relay_lag.labels(service).set(max(0, head - relay.position))
        METRICS.relay_lag_seconds.labels(service).set(
            await seconds_behind(store.pool, relay.position)
        )
    for name, runner in instance.runners.items():
        if runner.is_leader.is_set():
            METRICS.projection_lag.labels(service, name).set(max(0, head - runner.position))
            lag = await seconds_behind(store.pool, runner.position)
            METRICS.projection_lag_seconds.labels(service, name).set(lag)


sample_forever = every_interval(sample)


async def watch_event_loop() -> None:
    """Set `banyan_event_loop_lag_seconds` to how late a short timer fires."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LOOP_PROBE)
        METRICS.loop_lag.set(max(0.0, loop.time() - started - LOOP_PROBE))


async def _depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)
