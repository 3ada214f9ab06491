"""A message as a step sends it: kept in the journal, so it can be sent again without the code."""

from dataclasses import dataclass
from typing import Any

from pipelines.contracts import Contract
from pipelines.topology import request_queue_name


@dataclass(frozen=True, slots=True)
class Outgoing:
    service: str
    queue: str
    message_type: str
    body: dict[str, Any]

    @classmethod
    def of(cls, service: str, message: Contract) -> "Outgoing":
        return cls(
            service,
            request_queue_name(service, type(message)),
            message.message_type(),
            message.model_dump(mode="json"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "queue": self.queue,
            "messageType": self.message_type,
            "body": self.body,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Outgoing":
        return cls(data["service"], data["queue"], data["messageType"], data["body"])
