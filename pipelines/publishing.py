"""Publishing on the default exchange: the frame aio-pika would send, without building an
aio_pika.Message.

Every request and every reply is one publish. aio-pika's `Message` sets each of its fields
through a `__setattr__` that checks a lock, then `Exchange.publish` turns it into these
properties: a fifth of the CPU a service spends replying. The properties and the checks here
are the ones `Exchange.publish` makes, so the wire frame, and what a confirm channel raises
(DeliveryError, PublishError for a returned mandatory message), are the same.
"""

from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq import spec

NOT_PERSISTENT, PERSISTENT = 1, 2  # delivery modes; aio_pika.Message's default is the first


def json_properties(
    headers: dict[str, Any],
    encoding: str | None,
    correlation_id: str | None,
    *,
    reply_to: str | None = None,
    message_id: str | None = None,
    persistent: bool = False,
) -> spec.Basic.Properties:
    """The properties of a JSON message, as `aio_pika.Message(...).properties` gives them."""
    return spec.Basic.Properties(
        content_type="application/json",
        content_encoding=encoding,
        headers=headers,
        delivery_mode=PERSISTENT if persistent else NOT_PERSISTENT,
        priority=0,
        correlation_id=correlation_id,
        reply_to=reply_to,
        message_id=message_id,
    )


async def publish(
    channel: AbstractChannel,
    routing_key: str,
    body: bytes,
    properties: spec.Basic.Properties,
    *,
    mandatory: bool,
) -> Any:
    """Publish on the default exchange; on a confirm channel, wait for the broker's confirm."""
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    underlay = await channel.get_underlay_channel()
    return await underlay.basic_publish(
        body, exchange="", routing_key=routing_key, properties=properties, mandatory=mandatory
    )
