"""ariadne's HTTP and graphql-transport-ws handlers, serving each caller their own schema."""

import uuid
from collections.abc import Hashable
from datetime import timedelta
from typing import Any

from ariadne.asgi.handlers import GraphQLHTTPHandler, GraphQLTransportWSHandler
from ariadne.asgi.handlers.base import GraphQLHandlerBase
from ariadne.asgi.handlers.graphql_transport_ws import ClientContext
from ariadne.exceptions import HttpError
from graphql import GraphQLError, GraphQLSchema
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from gateway import nesting
from gateway.auth import ANONYMOUS
from gateway.errors import GatewayError
from gateway.graphql import limits, observe, throttle
from gateway.graphql.context import EventPositions, GraphQLContext
from gateway.graphql.errors import coded, format_error, platform_error, quiet_logger
from gateway.graphql.graphiql import GraphiQL
from gateway.graphql.schema import GatewaySchema
from gateway.routes import RouteTable
from gateway.session_watch import SessionWatch
from gateway.state import GatewayState
from gateway.subscriptions import EventHub, Subscription
from gateway.websocket import close_unauthorized, identify
from pipelines.identity import Caller

MAX_OPERATIONS = 100  # subscriptions (and queries in flight) per connection
INIT_TIMEOUT = timedelta(seconds=10)
BAD_REQUEST_CLOSE = 4400  # graphql-transport-ws: connection_init's payload malformed
FORBIDDEN_CLOSE = 4403  # graphql-transport-ws: connection_init refused
AUTHORIZATION = "Authorization"  # the one key of connection_init's payload (any case)
EXPLORER = GraphiQL(title="Banyan GraphQL")


def _configure(handler: GraphQLHandlerBase, schema: GraphQLSchema, **options: Any) -> None:
    handler.configure(
        schema,
        query_validator=limits.validate_within_limits,
        query_parser=observe.parse_query,
        explorer=EXPLORER,
        logger=quiet_logger,
        error_formatter=format_error,
        **options,
    )


class HTTPHandler(GraphQLHTTPHandler):
    """`POST /graphql` (and GraphiQL on `GET`) against one permission set's schema."""

    def __init__(self, schema: GraphQLSchema) -> None:
        super().__init__(extensions=[EventPositions])
        _configure(self, schema, context_value=lambda request, _data: request.state.graphql)

    async def extract_data_from_request(self, request: Request) -> Any:
        try:
            data = await super().extract_data_from_request(request)
        except HttpError as exc:  # answered as a GraphQL error, not ariadne's plain text
            raise GatewayError(400, "VALIDATION_ERROR", exc.message or "bad request") from exc
        except RecursionError as exc:
            raise nesting.too_deep() from exc
        get = request.method == "GET"
        raw = request.query_params.get("variables", "").encode() if get else await request.body()
        nesting.check(data, raw)
        return data

    async def create_json_response(
        self, request: Request, result: dict[str, Any], success: bool
    ) -> Response:
        for error in result.get("errors", ()):
            extensions = error.setdefault("extensions", {})
            extensions.setdefault("correlationId", request.state.correlation_id)
        context = getattr(request.state, "graphql", None)
        observe.record_errors(request.app.state.gateway.metrics, context, result.get("errors", []))
        status = 200 if success or result.get("data") is not None else 400
        return limits.json_response(result, status, request.state.correlation_id)


class CallerHandlers:
    """One handler (with its schema) per permission set; all rebuilt when the routes change."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._schema: GatewaySchema | None = None
        self._handlers: dict[Hashable, HTTPHandler] = {}
        state.on_routes_changed.append(self.forget)

    def forget(self, _table: RouteTable) -> None:
        self._schema, self._handlers = None, {}

    def for_caller(self, caller: Caller | None) -> HTTPHandler:
        if self._schema is None:
            self._schema = GatewaySchema(self.state.routes)
        key = self._schema.key(caller)
        if key not in self._handlers:
            self._handlers[key] = HTTPHandler(self._schema.visible_to(caller))
        return self._handlers[key]


class ConnectionHandler(GraphQLTransportWSHandler):
    """One graphql-transport-ws connection: its caller (from `connection_init`'s
    `Authorization`, else the handshake), their schema, at most 100 operations at once.

    Any other key of `connection_init`'s payload (`token`, `headers`, ...) closes the
    socket with 4400: a token passed the wrong way never makes an anonymous connection."""

    def __init__(self, state: GatewayState, hub: EventHub, handlers: CallerHandlers) -> None:
        super().__init__(connection_init_wait_timeout=INIT_TIMEOUT)
        self.state, self.hub, self.handlers = state, hub, handlers
        self.identity = ANONYMOUS
        self.subscriptions: list[Subscription] = []
        self._session = SessionWatch(state.sockets)
        self._serve(None)

    def _serve(self, caller: Caller | None) -> None:
        http = self.handlers.for_caller(caller)
        if http.schema is not None:
            _configure(self, http.schema, context_value=self._context, http_handler=http)

    def _context(self, websocket: WebSocket, _data: Any) -> GraphQLContext:
        client = websocket.client.host if websocket.client else ""
        self.subscriptions[:] = [s for s in self.subscriptions if not s.closed]
        return GraphQLContext(
            self.state,
            self.hub,
            self.identity,
            uuid.uuid4().hex,
            client,
            subscriptions=self.subscriptions,
        )

    async def handle_websocket(self, websocket: WebSocket) -> None:
        try:
            await super().handle_websocket(websocket)
        finally:  # an operation cancelled before it started never closes its subscription
            self._session.stop()
            for subscription in self.subscriptions:
                subscription.close()

    async def handle_websocket_connection_init_message(
        self, websocket: WebSocket, message: dict[str, Any], client_context: ClientContext
    ) -> None:
        if not client_context.connection_init_received:
            try:
                self.identity = identify(self.state, websocket, _authorization(message))
            except GatewayError as exc:
                close = BAD_REQUEST_CLOSE if exc.status == 400 else FORBIDDEN_CLOSE
                await websocket.close(close, f"{exc.code}: {exc.message}"[:120])
                return
            self._serve(self.identity.caller)
            self._session.watch(self.identity, lambda error: close_unauthorized(websocket, error))
        await super().handle_websocket_connection_init_message(websocket, message, client_context)

    async def handle_websocket_subscribe(
        self, websocket: WebSocket, data: Any, operation_id: str, client_context: ClientContext
    ) -> None:
        if len(client_context.operations) >= MAX_OPERATIONS:
            error = coded(
                f"at most {MAX_OPERATIONS} subscriptions per connection",
                "TOO_MANY_SUBSCRIPTIONS",
                None,
            )
            await self._refuse(websocket, operation_id, error)
            return
        try:  # each operation counts as one GraphQL request over HTTP does
            client = websocket.client.host if websocket.client else ""
            await throttle.admit(self.state, self.identity, client)
        except GatewayError as exc:
            await self._refuse(websocket, operation_id, platform_error(exc, uuid.uuid4().hex))
            return
        await super().handle_websocket_subscribe(websocket, data, operation_id, client_context)

    async def _refuse(self, websocket: WebSocket, operation_id: str, error: GraphQLError) -> None:
        payload = [format_error(error)]
        await websocket.send_json({"type": self.GQL_ERROR, "id": operation_id, "payload": payload})


def _authorization(message: dict[str, Any]) -> str | None:
    """`Authorization` of connection_init's payload (connectionParams), if it has one."""
    payload = message.get("payload")
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise GatewayError(400, "VALIDATION_ERROR", "connection_init's payload must be an object")
    unknown = sorted(str(k) for k in payload if str(k).lower() != AUTHORIZATION.lower())
    if unknown:
        raise GatewayError(
            400,
            "VALIDATION_ERROR",
            f"unknown key {unknown[0]!r}: send the token as {AUTHORIZATION}: Bearer <jwt>",
        )
    value = next(iter(payload.values()), None)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise GatewayError(401, "INVALID_TOKEN", f"use '{AUTHORIZATION}: Bearer <token>'")
    return value
