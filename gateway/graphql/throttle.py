"""Every GraphQL request over HTTP, and every operation over a WebSocket, counts against its
caller's rate limit, even one that calls no contract (introspection, `__typename`): in a window
of its own, as large as the caller's."""

from gateway.auth import Identity
from gateway.ratelimit import refuse_over_limit, subject
from gateway.state import GatewayState

SCOPE = "graphql"


async def admit(state: GatewayState, identity: Identity, client: str) -> None:
    """Count the request; 429 RATE_LIMIT_EXCEEDED (with Retry-After) over the limit."""
    limiter = state.limiter
    caller = identity.caller
    limit = limiter.user_limit if caller else limiter.anonymous_limit
    window = limiter.window(subject(caller, client), caller is not None, SCOPE, limit, caller)
    refuse_over_limit(await limiter.check(window), state.metrics.rate_limited.inc)
