"""A service's runtime in the test kit: the in-memory log, and messages routed in memory.

The platform's own processors run on it, so a message meets the same checks as on the bus:
decoding, the caller's token, permissions, policies, idempotency, retries on conflicts.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from pipelines import headers as h
from pipelines.calls import Calls
from pipelines.idempotency import bounded_key
from pipelines.memory_log import MemoryEventStore
from pipelines.messages import Incoming
from pipelines.positions import PositionWatcher
from pipelines.rpc import Response, RpcClient
from pipelines.runtime import Runtime
from pipelines.settings import Settings

if TYPE_CHECKING:
    from faststream.rabbit import RabbitBroker

# (queue, incoming) -> the reply, as a request over the bus would get it
Route = Callable[[str, Incoming], Awaitable[Response]]


class MemoryRpc(RpcClient):
    """Requests to the services of the kit, answered in memory."""

    def __init__(self, route: Route) -> None:
        super().__init__("memory://", service_name="testkit")
        self.route = route

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
        headers = headers or {}
        incoming = Incoming(
            message_id=bounded_key(message_id) if message_id else uuid.uuid4().hex,
            correlation_id=correlation_id or uuid.uuid4().hex,
            causation_id=str(headers[h.CAUSATION_ID]) if headers.get(h.CAUSATION_ID) else None,
            reply_to=None,
            reply_correlation=None,
            headers=headers,
            body=body,
        )
        return await self.route(queue, incoming)


class MemoryPositions(PositionWatcher):
    """Projections in the kit are folded before the next message is handled: always current."""

    def __init__(self, settings: Settings, store: MemoryEventStore) -> None:
        super().__init__(settings, cast(Any, None))
        self.store = store

    async def current(self, name: str) -> int:
        return await self.store.head_position()

    async def wait(self, name: str, position: int, timeout: float) -> bool:
        return await self.current(name) >= position


class MemoryRuntime(Runtime):
    def __init__(
        self, calls: Calls, settings: Settings, store: MemoryEventStore, rpc: MemoryRpc
    ) -> None:
        super().__init__(calls, settings, cast("RabbitBroker", None))  # no broker: no bus
        self.store = store
        self.rpc = rpc
        self.positions = MemoryPositions(settings, store)
        self.follow_ups: list[asyncio.Future[Any]] = []

    def spawn(self, coro: Any) -> None:
        """Follow-up work (snapshots): awaited by the kit before it reports an outcome."""
        self.follow_ups.append(asyncio.ensure_future(coro))

    async def settle(self) -> None:
        follow_ups, self.follow_ups = self.follow_ups, []
        await asyncio.gather(*follow_ups)
