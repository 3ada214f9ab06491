"""Resolvers: a query or mutation field calls its contract through `invoke`, as REST does
(permissions, rate limit, breaker, cache, the bus); a subscription field follows its event."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from graphql import GraphQLResolveInfo

from gateway.graphql.context import GraphQLContext
from gateway.graphql.errors import coded, outcome_error, platform_error
from gateway.invoke import Call, invoke
from gateway.routes import kebab
from gateway.subscriptions import Delivery, Subscription
from pipelines.errors import PlatformError

Resolver = Callable[..., Awaitable[Any]]


def contract_resolver(service: str, message_type: str) -> Resolver:
    name = kebab(message_type)

    async def resolve(
        _root: Any, info: GraphQLResolveInfo[GraphQLContext], **arguments: Any
    ) -> Any:
        context = info.context
        route = context.state.routes.find(service, name)  # the registry may have changed since
        if route is None:
            raise coded(f"{service} has no operation {name!r}", "NOT_FOUND", context.correlation_id)
        call = Call(
            route=route,
            payload=arguments.get("input") or {},
            identity=context.identity,
            correlation_id=context.correlation_id,
            min_position=context.min_position,
            idempotency_key=(
                context.command_key(str(info.path.key))
                if route.contract.kind == "command"
                else None
            ),
            traceparent=context.traceparent,
            client=context.client,
        )
        try:
            outcome = await invoke(context.state, call)
        except PlatformError as exc:
            raise platform_error(exc, context.correlation_id) from exc
        if outcome.status >= 400:
            raise outcome_error(outcome, context.correlation_id)
        if "X-Event-Position" in outcome.headers:
            context.positions.append(int(outcome.headers["X-Event-Position"]))
        return outcome.json()

    return resolve


def event_source(event_type: str) -> Callable[..., Any]:  # ariadne awaits what it returns
    async def source(_root: Any, info: GraphQLResolveInfo[GraphQLContext], **arguments: Any) -> Any:
        context = info.context
        try:  # subscribed (and bound on the bus) before the client's next message is read
            subscription = await context.hub.subscribe(
                event_type, context.identity, arguments.get("filter")
            )
        except PlatformError as exc:
            raise platform_error(exc, context.correlation_id) from exc
        context.subscriptions.append(subscription)
        return _deliveries(subscription, context.correlation_id)

    return source


async def _deliveries(subscription: Subscription, correlation_id: str) -> AsyncIterator[Delivery]:
    try:
        async for delivery in subscription:
            yield delivery
    except PlatformError as exc:
        raise platform_error(exc, correlation_id) from exc
    finally:
        subscription.close()


def event_envelope(
    delivery: Delivery, _info: GraphQLResolveInfo[GraphQLContext], **_arguments: Any
) -> Any:
    return delivery.envelope()
