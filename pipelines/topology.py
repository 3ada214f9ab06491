"""RabbitMQ names (fixed by the platform design) and the arguments of its queues."""

from typing import Any

from faststream.rabbit import ExchangeType, RabbitExchange, RabbitQueue

from pipelines.contracts import Contract, Event
from pipelines.settings import Settings

EVENTS_EXCHANGE = "exchange.platform.events"
DEAD_LETTER_EXCHANGE = "dlx.platform"
REPLY_TO = "amq.rabbitmq.reply-to"

events_exchange = RabbitExchange(EVENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
dead_letter_exchange = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.DIRECT, durable=True)


def request_queue_name(service: str, contract: type[Contract]) -> str:
    return queue_for(service, contract.__kind__, contract.message_type())


def queue_for(service: str, kind: str, message_type: str) -> str:
    """The queue of a command or query, from its kind and name."""
    return f"service.{service}.{'commands' if kind == 'command' else 'queries'}.{message_type}"


def event_routing_key(service: str, event_type: str) -> str:
    return f"{service}.{event_type.lower()}"


def event_binding_key(event: type[Event]) -> str:
    return event_routing_key(event.__service__ or "*", event.message_type())


def event_queue_name(subscriber: str, event: type[Event]) -> str:
    return f"{EVENTS_EXCHANGE}.{subscriber}.{event.message_type().lower()}"


def dead_letter_queue_name(queue: str) -> str:
    return f"dlq.{queue}"


def durable_queue(
    settings: Settings, name: str, routing_key: str, arguments: dict[str, Any]
) -> RabbitQueue:
    """A durable queue of the configured type (`classic`, or `quorum` for clusters, with a
    delivery limit)."""
    kind: dict[str, Any] = {"x-queue-type": settings.rabbitmq_queue_type}
    if settings.rabbitmq_queue_type == "quorum":
        kind["x-delivery-limit"] = settings.rabbitmq_delivery_limit
    queue: RabbitQueue = RabbitQueue(
        name, durable=True, routing_key=routing_key, arguments={**kind, **arguments}
    )  # type: ignore[call-overload]
    return queue


def work_queue(settings: Settings, name: str, routing_key: str | None = None) -> RabbitQueue:
    """A durable queue whose rejected messages go to `dlq.{name}`."""
    dead_letters = {
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": dead_letter_queue_name(name),
    }
    return durable_queue(settings, name, routing_key or name, dead_letters)


def dead_letter_queue(settings: Settings, queue: str) -> RabbitQueue:
    name = dead_letter_queue_name(queue)
    return durable_queue(settings, name, name, {})
