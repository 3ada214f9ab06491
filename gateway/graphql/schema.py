"""The GraphQL schema of the routing table, and the part of it each caller may see.

    type Query        { getOrder(input: GetOrderInput!): OrderSummary   _schemaVersion: Int! }
    type Mutation     { placeOrder(input: PlaceOrderInput!): PlaceOrderResult }
    type Subscription { orderPlaced(filter: OrderPlacedFilter): OrderPlacedEvent }

Root fields are the contract names in camelCase (prefixed with the service's name when two
services share one). Commands and queries alike take one `input` argument of the contract's
input type, required when the contract has required fields and absent when it has no fields.
A field returns the handler's result (`JSON` when the contract declares no result model).
A subscription field returns an envelope (`eventType`, `eventId`, `position`, `occurredAt`,
`correlationId`, `schemaVersion`) around the event's `data`, and filters on the event's
top-level scalar fields.
`_schemaVersion` (the routing table's version) keeps `Query` non-empty for every caller.
A caller's schema holds the operations they may call and the events they may receive
(`gateway.audience`): an anonymous caller sees only the public events.
"""

import json
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

from ariadne import MutationType, ObjectType, QueryType, SubscriptionType, make_executable_schema
from graphql import GraphQLObjectType, GraphQLSchema

from gateway.audience import may_receive
from gateway.auth import Authenticator
from gateway.graphql import resolvers, scalars
from gateway.graphql.typemap import TypeMap, description, is_name, pascal
from gateway.routes import RouteTable, camel
from pipelines.identity import Caller
from pipelines.registry import ContractInfo

VERSION_FIELD = "_schemaVersion"
OPERATIONS = {"query": "Query", "command": "Mutation", "event": "Subscription"}
ENVELOPE = """"The {event} event, as the platform published it."
type {name} {{
  eventType: String!
  eventId: String
  "The event's global position in the log: send it as X-Min-Position to read your writes."
  position: Long
  occurredAt: String
  correlationId: String
  "The version of the event's schema `data` was written in: during a deploy, an older one."
  schemaVersion: Int!
  data: {data}!
}}"""


@dataclass(frozen=True)
class RootField:
    operation: str  # Query, Mutation or Subscription
    name: str
    service: str
    contract: ContractInfo


def root_fields(table: RouteTable) -> list[RootField]:
    entries = [(r.service, r.contract) for r in table.all()]
    entries += [table.events[event] for event in sorted(table.events)]
    taken = Counter((c.kind, camel(c.message_type)) for _, c in entries)
    fields = []
    for service, contract in entries:
        name = camel(contract.message_type)
        if taken[(contract.kind, name)] > 1:
            name = camel(pascal(service) + contract.message_type)
        if is_name(name):
            fields.append(RootField(OPERATIONS[contract.kind], name, service, contract))
    return fields


def sdl(fields: list[RootField]) -> str:
    types = TypeMap()
    roots: dict[str, list[str]] = {"Query": [], "Mutation": [], "Subscription": []}
    for field in fields:
        render = _event_field if field.operation == "Subscription" else _operation_field
        roots[field.operation].append(render(field, types))
    roots["Query"].append(
        f'  "The version of the gateway\'s routing table."\n  {VERSION_FIELD}: Int!\n'
    )
    operations = [f"type {name} {{\n{''.join(lines)}}}" for name, lines in roots.items() if lines]
    return "\n\n".join([scalars.SDL, *types.definitions.values(), *operations])


def _describe(contract: ContractInfo) -> str:
    required = contract.required_permissions
    needs = f"Requires {', '.join(required)}." if required else ""
    audience = contract.audience
    if audience is not None and audience.owner is not None:
        lifted = f", unless you hold {', '.join(audience.admin)}" if audience.admin else ""
        needs += f" Only events whose {audience.owner} is your user id{lifted}."
    return description("\n\n".join(p for p in (contract.description, needs) if p), "  ")


def _operation_field(field: RootField, types: TypeMap) -> str:
    contract = field.contract
    schema = contract.input_schema
    argument = ""
    if any(is_name(p) for p in schema.get("properties", {})):
        given = types.ref(schema, schema, contract.message_type, "input")
        argument = f"(input: {given.field(required=bool(schema.get('required')))})"
    output = contract.output_schema
    result = (
        types.ref(output, output, f"{contract.message_type}Result", "output").type
        if output
        else "JSON"
    )
    return f"{_describe(contract)}  {field.name}{argument}: {result}\n"


def _event_field(field: RootField, types: TypeMap) -> str:
    contract, event = field.contract, field.contract.message_type
    schema = contract.input_schema
    data = types.ref(schema, schema, event, "output").type
    envelope = types.define(
        f"{pascal(event)}Event",
        json.dumps(["event", event, data]),
        lambda name: ENVELOPE.format(event=event, name=name, data=data),
    )
    chosen = _filter_type(contract, types)
    argument = f"(filter: {chosen})" if chosen else ""
    return f"{_describe(contract)}  {field.name}{argument}: {envelope}\n"


def _filter_type(contract: ContractInfo, types: TypeMap) -> str | None:
    """Equality filters on the event's top-level scalar and enum fields."""
    schema, event = contract.input_schema, contract.message_type
    owner = pascal(schema.get("title") or event)
    fields = types.properties(schema, schema, owner, "output")
    leaves = {name: ref.type for name, ref in fields.items() if types.is_leaf(ref.type)}
    if not leaves:
        return None
    lines = "".join(f"  {name}: {type_}\n" for name, type_ in leaves.items())
    return types.define(
        f"{pascal(event)}Filter",
        json.dumps(["filter", event, leaves]),
        lambda name: (
            f'"Only {event} events whose data has all these values."\ninput {name} {{\n{lines}}}'
        ),
    )


def executable(table: RouteTable, fields: list[RootField]) -> GraphQLSchema:
    query, mutation, subscription = QueryType(), MutationType(), SubscriptionType()
    query.set_field(VERSION_FIELD, lambda *_: table.version)
    for field in fields:
        message_type = field.contract.message_type
        if field.operation == "Subscription":
            subscription.set_source(field.name, resolvers.event_source(message_type))
            subscription.set_field(field.name, resolvers.event_envelope)
        else:
            root = query if field.operation == "Query" else mutation
            root.set_field(field.name, resolvers.contract_resolver(field.service, message_type))
    present = {f.operation for f in fields}
    roots: list[ObjectType] = [query]
    roots += [t for t in (mutation, subscription) if t.name in present]
    return make_executable_schema(sdl(fields), *roots, *scalars.SCALARS)


class GatewaySchema:
    """The whole schema of a routing table; each caller is served the part they may see."""

    def __init__(self, table: RouteTable) -> None:
        fields = root_fields(table)
        self.full = executable(table, fields)
        self.fields = {(f.operation, f.name): f for f in fields}
        permissions = {p for f in fields for p in f.contract.required_permissions}
        self.permissions = frozenset(permissions)

    def key(self, caller: Caller | None) -> Hashable:
        """Callers with the same key see the same schema."""
        if caller is None:
            return None
        return frozenset(caller.permissions & self.permissions)

    def visible_to(self, caller: Caller | None) -> GraphQLSchema:
        def root(operation: GraphQLObjectType | None) -> GraphQLObjectType | None:
            if operation is None:
                return None
            fields = {
                name: field
                for name, field in operation.fields.items()
                if self._visible(operation.name, name, caller)
            }
            return GraphQLObjectType(operation.name, fields) if fields else None

        full = self.full
        return GraphQLSchema(
            query=root(full.query_type),
            mutation=root(full.mutation_type),
            subscription=root(full.subscription_type),
        )

    def _visible(self, operation: str, name: str, caller: Caller | None) -> bool:
        field = self.fields.get((operation, name))
        if field is None:
            return True
        if operation == "Subscription":
            return may_receive(caller, field.service, field.contract)
        return Authenticator.may_see(caller, field.contract)
