"""Deliveries straight to their processor.

FastStream declares each queue, starts and stops its consumer, and on stop waits for the
messages in flight. Per message, its pipeline (context scopes, middlewares, parser, decoder,
the handler call) does nothing a processor needs, which decodes, checks, logs and acknowledges
every message itself: it was a sixth of the orders service's CPU per command. So a
subscriber's deliveries go to the processor directly, still counted in the lock FastStream's
stop waits on.
"""

import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from pipelines.dispatch import Processor

log = logging.getLogger("banyan.consuming")


def deliver_directly(subscriber: Any, processor: Processor) -> None:
    """Have FastStream's `subscriber` (not yet started) hand each delivery to `processor`."""

    async def consume(raw: AbstractIncomingMessage) -> None:
        if not subscriber.running:  # stopping: left unacknowledged, delivered again
            return
        with subscriber.lock:  # FastStream's stop waits until no delivery holds it
            try:
                await processor(raw)
            except Exception:  # the processor could not even reject it: the broker redelivers
                log.exception("cannot finish a message from %s", processor.queue)

    subscriber.consume = consume  # what the subscriber's start() hands to the queue
