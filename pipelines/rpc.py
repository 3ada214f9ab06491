"""Many requests in flight over one connection: direct reply-to, matched by correlation id.

FastStream's `broker.request` holds a broker-wide lock for the whole round trip; this client
does not, so a gateway or a process manager can wait for thousands of replies at once.

A request does not wait for its publisher confirm before it waits for the reply (the reply
is the better proof, and usually comes first); the confirm still runs beside it, so a request
the broker cannot route (mandatory, returned) fails at once with ServiceUnavailable, and one
that cannot be encoded (a header value AMQP has no type for) with a ValidationError.
"""

import asyncio
import functools
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError, PublishError

from pipelines import headers as h
from pipelines import telemetry
from pipelines.contracts import Contract
from pipelines.errors import (
    PlatformError,
    ServiceUnavailable,
    Timeout,
    ValidationError,
    error_from_body,
)
from pipelines.idempotency import bounded_key
from pipelines.messages import Incoming, encode_body
from pipelines.publishing import json_properties, publish
from pipelines.rabbitnodes import connect_rabbitmq
from pipelines.topology import REPLY_TO, request_queue_name

# what encoding a message raises for a value AMQP cannot carry (an int over 64 bits, ...)
UNENCODABLE = (TypeError, ValueError, OverflowError, struct.error)


@dataclass(slots=True, frozen=True)
class Response:
    body: bytes
    ok: bool
    position: int | None
    headers: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error(self) -> PlatformError:
        return error_from_body(self.json())

    def result(self) -> Any:
        """The handler's result, or its error raised as the matching PlatformError."""
        if not self.ok:
            raise self.error()
        return self.json()


class RpcClient:
    def __init__(self, url: str, *, service_name: str = "client") -> None:
        self.url = url
        self.service_name = service_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._waiting: dict[str, asyncio.Future[Response]] = {}

    async def connect(self) -> "RpcClient":
        self._connection = await connect_rabbitmq(self.url)
        # confirmed publishes: a request the broker cannot route is returned, and fails
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        # direct reply-to is not a declared queue, so aio-pika does not restore its consumer
        # when the channel reopens after a lost connection: consume again then
        self._channel.reopen_callbacks.add(self._consume_replies)
        self._channel.close_callbacks.add(self._fail_waiting)
        await self._consume_replies()
        return self

    def _fail_waiting(self, _channel: object, reason: object = None) -> None:
        """Replies on direct reply-to die with the channel: the waiting requests fail now."""
        error = ServiceUnavailable(
            f"lost the connection to RabbitMQ ({reason}); the request may have been handled"
        )
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)

    async def _consume_replies(self, _reopened: object = None, /) -> None:
        assert self._channel is not None
        queue = await self._channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def close(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        if self._connection is not None:
            await self._connection.close()

    async def __aenter__(self) -> "RpcClient":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def reachable(self, timeout: float) -> bool:
        """Whether the broker answers a round trip on this client's channel within `timeout`
        (a connection that looks open may lead to a broker that is frozen)."""
        if self._channel is None or not self.connected:
            return False
        try:
            # robust=False: a robust channel answers a passive declare it made before itself
            probe = self._channel.declare_exchange("amq.direct", passive=True, robust=False)
            await asyncio.wait_for(probe, timeout)
        except Exception:
            return False
        return True

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.pop(message.correlation_id or "", None)
        if future is None or future.done():
            return  # a late reply: its caller already timed out
        incoming = Incoming.from_raw(message)
        headers = incoming.headers
        position = headers.get(h.EVENT_POSITION)
        future.set_result(
            Response(
                incoming.body,
                headers.get(h.STATUS, "ok") == "ok",
                int(str(position)) if position is not None else None,
                headers,
            )
        )

    async def request(
        self,
        queue: str,
        body: bytes,
        *,
        timeout: float = 30.0,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Response:
        assert self._channel is not None, "connect() first"
        key = uuid.uuid4().hex
        correlation_id = correlation_id or key
        all_headers = {
            h.CORRELATION_ID: correlation_id,
            h.SERVICE_NAME: self.service_name,
            h.RETRY_COUNT: 0,
            **(headers or {}),
        }
        body, encoding = encode_body(body)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        with telemetry.requesting(self.service_name, queue, all_headers, correlation_id) as sent:
            properties = json_properties(
                all_headers,  # as `requesting` completed them (trace context)
                encoding,
                key,
                reply_to=REPLY_TO,
                message_id=bounded_key(message_id) if message_id else uuid.uuid4().hex,
                persistent=True,
            )
            published = asyncio.ensure_future(
                publish(self._channel, queue, body, properties, mandatory=True)
            )
            published.add_done_callback(functools.partial(_unless_published, future, queue))
            try:
                response = await asyncio.wait_for(future, timeout)
                sent.ok = response.ok
                return response
            except TimeoutError as exc:
                raise Timeout(f"no reply from {queue} within {timeout:g}s") from exc
            finally:
                self._waiting.pop(key, None)
                future.cancel()
                published.cancel()  # done, or waiting for a confirm that no longer matters

    async def send(
        self,
        service: str,
        message: Contract,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        message_id: str | None = None,
        correlation_id: str | None = None,
        **extra_headers: Any,
    ) -> Response:
        """Send a command or query contract to `service`."""
        headers = {h.MESSAGE_TYPE: message.message_type(), **extra_headers}
        if token:
            headers[h.USER_TOKEN] = token
        return await self.request(
            request_queue_name(service, type(message)),
            message.to_json(),
            timeout=timeout,
            headers=headers,
            message_id=message_id,
            correlation_id=correlation_id,
        )


def _unless_published(
    reply: "asyncio.Future[Response]", queue: str, published: "asyncio.Future[object]"
) -> None:
    """Fail the waiting request if its publish failed (returned: nothing consumes `queue`)."""
    if published.cancelled():
        return
    error = published.exception()
    if error is None or reply.done():
        return
    if isinstance(error, DeliveryError | PublishError):
        reply.set_exception(ServiceUnavailable(f"nothing consumes {queue}"))
    elif isinstance(error, UNENCODABLE):  # the request's own fault: the broker is fine
        reply.set_exception(ValidationError(f"the request cannot be sent as a message: {error}"))
    else:  # no connection to the broker (it is reconnecting): a clear 503, not a crash
        reply.set_exception(ServiceUnavailable(f"cannot reach RabbitMQ: {error!r}"))
