"""Many requests in flight over one connection: direct reply-to, matched by correlation id.

FastStream's `broker.request` holds a broker-wide lock for the whole round trip; this client
does not, so a gateway or a process manager can wait for thousands of replies at once.
"""

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError

from pipelines import headers as h
from pipelines import telemetry
from pipelines.contracts import Contract
from pipelines.errors import PlatformError, ServiceUnavailable, Timeout, error_from_body
from pipelines.messages import Incoming, encode_body
from pipelines.topology import REPLY_TO, request_queue_name


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
        self._channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[Response]] = {}

    async def connect(self) -> "RpcClient":
        self._connection = await aio_pika.connect_robust(self.url)
        # confirmed publishes: a request the broker cannot route fails at once (no service)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        queue = await self._channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)
        return self

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
            try:
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        headers=all_headers,
                        correlation_id=key,
                        reply_to=REPLY_TO,
                        message_id=message_id or uuid.uuid4().hex,
                        content_type="application/json",
                        content_encoding=encoding,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=queue,
                )
                response = await asyncio.wait_for(future, timeout)
                sent.ok = response.ok
                return response
            except (DeliveryError, PublishError) as exc:
                raise ServiceUnavailable(f"nothing consumes {queue}") from exc
            except TimeoutError as exc:
                raise Timeout(f"no reply from {queue} within {timeout:g}s") from exc
            finally:
                self._waiting.pop(key, None)
                with contextlib.suppress(Exception):
                    future.cancel()

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
