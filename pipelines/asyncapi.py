"""The AsyncAPI 3.0 document of a service: what `faststream docs gen module:app` prints.

Written from the service's contracts rather than from FastStream's handler signatures (a
service's handlers take the raw message and decode it themselves): its name, version and
description; each command and query it answers, with the payload, the reply and the queue;
each event it publishes, and each it subscribes to, with the routing key.
"""

import json
from typing import TYPE_CHECKING, Any, cast

import yaml
from faststream.specification import AsyncAPI

from pipelines.contracts import Contract, Event
from pipelines.dispatch import Handler
from pipelines.rabbitnodes import rabbitmq_nodes
from pipelines.schema_components import Components
from pipelines.topology import EVENTS_EXCHANGE, event_binding_key, event_routing_key, queue_for

if TYPE_CHECKING:
    from pipelines.service import Service

REPLY_ADDRESS = {"location": "$message.header#/reply_to"}  # RabbitMQ direct reply-to


class ServiceDocument:
    """A finished document, in the shape FastStream's `docs gen` and `docs serve` expect."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    @property
    def title(self) -> str:
        title: str = self.document["info"]["title"]
        return title

    def to_jsonable(self) -> Any:
        return self.document

    def to_json(self) -> str:
        return json.dumps(self.document)

    def to_yaml(self) -> str:
        text: str = yaml.safe_dump(self.document, sort_keys=False)
        return text


class ServiceAsyncAPI(AsyncAPI):
    """FastStream's specification factory for one service, its contracts the source."""

    def __init__(self, service: "Service", rabbitmq_url: str) -> None:
        super().__init__(
            title=service.name, version=service.version, description=service.description
        )
        self.service = service
        self.rabbitmq_url = rabbitmq_url

    def to_specification(self) -> ServiceDocument:
        return ServiceDocument(service_document(self.service, self.rabbitmq_url))


def service_document(service: "Service", rabbitmq_url: str) -> dict[str, Any]:
    parts = _Parts(service.name, Components())
    for handler in service.requests.values():
        parts.answer(handler)
    for event in service.published:
        parts.event(event, "send", event_routing_key(service.name, event.message_type()))
    for handler in service.subscriptions.values():
        event = cast(type[Event], handler.contract)  # subscriptions are to events
        parts.event(event, "receive", event_binding_key(event))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": service.name,
            "version": service.version,
            "description": service.description or service.name,
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": _server(rabbitmq_url)},
        "channels": parts.channels,
        "operations": parts.operations,
        "components": {"messages": parts.messages, "schemas": parts.components.schemas},
    }


def _server(url: str) -> dict[str, Any]:
    """The broker's address, never its credentials."""
    node = rabbitmq_nodes(url)[0]
    host = f"{node.host or 'localhost'}:{node.port or 5672}"
    return {"host": host, "protocol": "amqp", "pathname": node.path or "/"}


class _Parts:
    def __init__(self, service: str, components: Components) -> None:
        self.service = service
        self.components = components
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}

    def answer(self, handler: Handler) -> None:
        contract = handler.contract
        name = contract.message_type()
        queue = queue_for(self.service, contract.__kind__, name)
        self._channel(name, queue, contract.model_json_schema(by_alias=True), contract)
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "summary": contract.__description__ or name,
        }
        result = handler.result
        if isinstance(result, type) and hasattr(result, "model_json_schema"):
            reply = f"{name}Reply"
            self._channel(reply, None, result.model_json_schema(by_alias=True), None, reply)
            operation["reply"] = {
                "address": REPLY_ADDRESS,
                "channel": {"$ref": f"#/channels/{reply}"},
                "messages": [{"$ref": f"#/channels/{reply}/messages/{reply}"}],
            }
        self.operations[_operation_id(name)] = operation

    def event(self, event: type[Contract], action: str, routing_key: str) -> None:
        name = event.message_type()
        self._channel(name, routing_key, event.model_json_schema(by_alias=True), event)
        verb = "publish" if action == "send" else "on"
        self.operations[f"{verb}{name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "summary": event.__description__ or name,
            "bindings": {"amqp": {"cc": [routing_key], "bindingVersion": "0.3.0"}},
        }

    def _channel(
        self,
        name: str,
        address: str | None,
        schema: dict[str, Any],
        contract: type[Contract] | None,
        message: str | None = None,
    ) -> None:
        message = message or name
        payload = self.components.reference(
            self.components.placed(schema, self.service), self.service
        )
        self.messages[message] = {
            "name": message,
            "title": message,
            "contentType": "application/json",
            "payload": payload,
            "correlationId": {"location": "$message.header#/correlation_id"},
        }
        channel: dict[str, Any] = {
            "address": address,
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        if contract is not None and contract.__kind__ == "event":
            channel["bindings"] = {"amqp": _exchange_binding()}
        elif address is not None:
            channel["bindings"] = {"amqp": _queue_binding(address)}
        self.channels[name] = channel


def _operation_id(name: str) -> str:
    return name[0].lower() + name[1:]


def _exchange_binding() -> dict[str, Any]:
    exchange = {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False}
    return {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}


def _queue_binding(queue: str) -> dict[str, Any]:
    return {"is": "queue", "queue": {"name": queue, "durable": True}, "bindingVersion": "0.3.0"}
