"""`/graphql`: queries and mutations over HTTP, GraphiQL on GET, subscriptions over WebSocket."""

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket

from gateway import requests
from gateway.errors import GatewayError
from gateway.graphql import throttle
from gateway.graphql.context import GraphQLContext
from gateway.graphql.errors import format_error, platform_error
from gateway.graphql.graphiql import ASSETS
from gateway.graphql.transport import CallerHandlers, ConnectionHandler
from gateway.idempotency import HEADER, checked_key
from gateway.state import GatewayState
from gateway.subscriptions import EventHub


def mount(app: FastAPI, state: GatewayState, hub: EventHub) -> None:
    handlers = CallerHandlers(state)

    async def graphql_http(request: Request) -> Response:
        correlation_id = request.state.correlation_id
        try:
            identity = state.auth.identify(request.headers)
            client = request.client.host if request.client else ""
            if request.method == "POST" or "query" in request.query_params:
                await throttle.admit(state, identity, client)
            request.state.graphql = context = GraphQLContext(
                state,
                hub,
                identity,
                correlation_id,
                client=client,
                min_position=requests.min_position(request.headers),
                traceparent=requests.traceparent(request.headers),
                idempotency_key=checked_key(request.headers),
            )
            response = await handlers.for_caller(identity.caller).handle_request(request)
            if context.idempotency_key is not None:
                response.headers[HEADER] = context.idempotency_key
            return response
        except GatewayError as exc:
            body = {"errors": [format_error(platform_error(exc, correlation_id))]}
            return JSONResponse(body, exc.status, exc.headers)

    async def graphql_websocket(websocket: WebSocket) -> None:
        await ConnectionHandler(state, hub, handlers).handle_websocket(websocket)

    # a FastAPI route: the request then names its route (`http.route` on its span)
    app.add_api_route("/graphql", graphql_http, methods=["GET", "POST"], include_in_schema=False)
    app.add_api_websocket_route("/graphql", graphql_websocket)
    ASSETS.mount(app)
