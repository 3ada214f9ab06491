"""GraphQL for the gateway: the contracts of the registry as one schema, filtered per caller.

- `POST /graphql`, GraphiQL on `GET /graphql`, subscriptions over `graphql-transport-ws` on
  the same path. Commands are mutations, queries are query fields, events are subscriptions;
  field names are the contract names in camelCase (`schema.py`, types from JSON Schema in
  `typemap.py`).
- Arguments: every command and query takes one `input: <Contract>Input` argument (optional
  when the contract has no required field, absent when it has no field), the same object the
  REST endpoint takes as its body or query string.
- Results: a field returns its handler's result as is. The position of the last event the
  request's mutations appended comes back as `extensions: {"eventPosition": N}`; send it as
  `X-Min-Position` with a later query to read your writes.
- Idempotency: an `Idempotency-Key` header makes the request's mutations idempotent, as it
  does a REST command: each mutation field is handled once per key and field (alias or name),
  and a repeated request is answered with the first one's results. Without one, the gateway
  assigns a key to a request that runs mutations and returns it in the response header.
- WebSocket connections close (4401 TOKEN_EXPIRED) when the caller's token expires.
- Each field runs through `gateway.invoke` exactly as REST does (permissions, rate limit,
  breaker, cache, the bus). Errors are GraphQL errors with `extensions: {code, correlationId,
  details}` and the platform's codes.
- A caller sees only the fields their permissions allow (anonymous callers: public ones); the
  schema is built once per permission set and rebuilt when the routes change. A WebSocket
  connection keeps the schema it authenticated with.
- Limits (`limits.py`): depth, cost (introspection included), tokens, answer size; every
  HTTP request and WebSocket operation counts against the caller's rate limit (`throttle.py`);
  100 operations per WebSocket connection.
- Subscriptions: `orderPlaced(filter: OrderPlacedFilter)` yields `{eventType, eventId,
  position, occurredAt, correlationId, schemaVersion, data}`; the caller authenticates with
  `connection_init` `{"Authorization": "Bearer <jwt>"}` (or the handshake's header).
"""

from gateway.graphql.app import mount

__all__ = ["mount"]
