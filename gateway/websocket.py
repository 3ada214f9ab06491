"""The plain WebSocket at `/ws`: live events by type, with equality filters.

Authentication: `?token=<jwt>`, an `Authorization: Bearer` header, or an `auth` message
(which may also change the identity later: the connection's subscriptions then carry on for
the new caller, or end with an `error` if they may not have them). A subscription is refused
with an `error` unless the caller is in the event's audience (`gateway.audience`): 401
NO_AUTH_HEADER for an anonymous caller and an event that is not public; 403
INSUFFICIENT_PERMISSIONS for missing permissions, for an event that is not delivered to
clients (none declared, or a platform service's), or for filtering on another user's owner
field. Under an owner rule (say `OrderPlaced`'s `customerId`) a caller without the
contract's admin permission receives only their own events: the filter is added for them and
shown in `subscribed`.

Client -> server:
    {"type": "auth", "token": "<jwt>"}
    {"type": "subscribe", "eventType": "OrderPlaced", "filters": {"customerId": "c-1"}, "id": "s1"}
    {"type": "unsubscribe", "id": "s1"}
    {"type": "ping"}
Server -> client:
    {"type": "authenticated", "userId": "u-1"}            (userId null: anonymous)
    {"type": "subscribed", "id": "s1", "eventType": "OrderPlaced", "filters": {...}}
    {"type": "event", "id": "s1", "eventType", "eventId", "position", "occurredAt",
     "correlationId", "schemaVersion", "data"}
    {"type": "unsubscribed", "id": "s1"}
    {"type": "pong"}
    {"type": "error", "id": "s1", "error": {"code", "message", "details"}}  (id when it has one)

`id` is optional on subscribe (one is made up and returned). Filters match when every named
top-level field of the event's data equals the given value. At most 100 subscriptions per
connection. A subscription the registry's new version of its contract no longer admits ends
with an `error` carrying its id. A bad token closes the connection (4401) after the error
message; so do the expiry of the caller's token (TOKEN_EXPIRED), unless an `auth` message
brought a fresh one, and its revocation (INVALID_TOKEN), as soon as the gateway hears of it.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import ANONYMOUS, Identity
from gateway.errors import GatewayError
from gateway.session_watch import SessionWatch
from gateway.state import GatewayState
from gateway.subscriptions import EventHub, Subscription
from pipelines.errors import PlatformError

MAX_SUBSCRIPTIONS = 100
UNAUTHORIZED_CLOSE = 4401
Message = dict[str, Any]


def mount(app: FastAPI, state: GatewayState, hub: EventHub) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await Connection(state, hub, websocket).run()

    app.add_api_websocket_route("/ws", endpoint)


def identify(
    state: GatewayState, websocket: WebSocket, authorization: str | None = None
) -> Identity:
    """The caller of a socket: `authorization` if given, else `?token=`, else its handshake."""
    headers = dict(websocket.headers)
    token = websocket.query_params.get("token")
    if authorization:
        headers["authorization"] = authorization
    elif token:
        headers["authorization"] = f"Bearer {token}"
    return state.auth.identify(Headers(headers))


async def close_unauthorized(websocket: WebSocket, error: GatewayError) -> None:
    with contextlib.suppress(RuntimeError):  # closed already
        await websocket.close(UNAUTHORIZED_CLOSE, f"{error.code}: {error.message}"[:120])


class Connection:
    def __init__(self, state: GatewayState, hub: EventHub, websocket: WebSocket) -> None:
        self.state = state
        self.hub = hub
        self.websocket = websocket
        self.identity = ANONYMOUS
        self.subscriptions: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self._sending = asyncio.Lock()
        self._session = SessionWatch(state.sockets)
        self._handlers: dict[str, Callable[[Message], Awaitable[None]]] = {
            "auth": self.authenticate,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "ping": self.ping,
        }

    async def run(self) -> None:
        await self.websocket.accept()
        try:
            self.identity = identify(self.state, self.websocket)
        except GatewayError as exc:
            await self.send_error(exc)
            await self.websocket.close(UNAUTHORIZED_CLOSE, exc.code)
            return
        self._session.watch(self.identity, self.end_session)
        try:
            while True:
                await self.receive(await self.websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            self._session.stop()
            for subscription_id in list(self.subscriptions):
                await self.stop(subscription_id)

    async def receive(self, text: str) -> None:
        message: Any = None
        with contextlib.suppress(ValueError):
            message = json.loads(text)
        if not isinstance(message, dict):
            await self.send_error(GatewayError(400, "VALIDATION_ERROR", "send JSON objects"))
            return
        handler = self._handlers.get(str(message.get("type")))
        try:
            if handler is None:
                raise GatewayError(
                    400,
                    "VALIDATION_ERROR",
                    f"unknown message type {message.get('type')!r}",
                    {"expected": sorted(self._handlers)},
                )
            await handler(message)
        except PlatformError as exc:
            await self.send_error(exc, message.get("id"))

    async def authenticate(self, message: Message) -> None:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            raise GatewayError(400, "VALIDATION_ERROR", "auth needs a token")
        self.identity = identify(self.state, self.websocket, f"Bearer {token}")
        self._session.watch(self.identity, self.end_session)
        caller = self.identity.caller
        for subscription, _ in self.subscriptions.values():
            self.hub.reassign(subscription, caller)
        await self.send({"type": "authenticated", "userId": caller.user_id if caller else None})

    async def subscribe(self, message: Message) -> None:
        subscription_id = str(message.get("id") or uuid.uuid4().hex)
        if subscription_id in self.subscriptions:
            raise GatewayError(409, "CONFLICT", f"subscription {subscription_id!r} exists")
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise GatewayError(
                429, "TOO_MANY_SUBSCRIPTIONS", f"at most {MAX_SUBSCRIPTIONS} per connection"
            )
        event_type = message.get("eventType")
        if not isinstance(event_type, str):
            raise GatewayError(400, "VALIDATION_ERROR", "subscribe needs an eventType")
        subscription = await self.hub.subscribe(event_type, self.identity, message.get("filters"))
        task = asyncio.create_task(self.forward(subscription_id, subscription))
        self.subscriptions[subscription_id] = (subscription, task)
        await self.send(
            {
                "type": "subscribed",
                "id": subscription_id,
                "eventType": event_type,
                "filters": subscription.filters,
            }
        )

    async def unsubscribe(self, message: Message) -> None:
        subscription_id = str(message.get("id"))
        if subscription_id not in self.subscriptions:
            raise GatewayError(404, "NOT_FOUND", f"no subscription {subscription_id!r}")
        await self.stop(subscription_id)
        await self.send({"type": "unsubscribed", "id": subscription_id})

    async def ping(self, message: Message) -> None:
        await self.send({"type": "pong"})

    async def forward(self, subscription_id: str, subscription: Subscription) -> None:
        try:
            async for delivery in subscription:
                await self.send({"type": "event", "id": subscription_id, **delivery.envelope()})
        except GatewayError as exc:  # overflowed, or no longer delivered to this caller
            self.subscriptions.pop(subscription_id, None)
            await self.send_error(exc, subscription_id)

    async def stop(self, subscription_id: str) -> None:
        subscription, task = self.subscriptions.pop(subscription_id)
        subscription.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def end_session(self, error: GatewayError) -> None:
        await self.send_error(error)
        await close_unauthorized(self.websocket, error)

    async def send(self, message: Message) -> None:
        async with self._sending:  # subscriptions forward events from their own tasks
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.websocket.send_json(message)

    async def send_error(self, exc: PlatformError, subscription_id: Any = None) -> None:
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
        message: Message = {"type": "error", "error": error}
        if subscription_id is not None:
            message["id"] = subscription_id
        await self.send(message)
