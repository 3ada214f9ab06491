"""What one `when` did, and the `then` that checks it: events, result, error, messages sent."""

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from pipelines.contracts import Contract, Event, Query
from pipelines.errors import PlatformError
from pipelines.eventstore import RecordedEvent

E = TypeVar("E", bound=Event)
UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Sent:
    """A command or query a handler or a flow sent to another service."""

    queue: str
    message_type: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a subscriber refused: on the bus it would go to the dead-letter queue."""

    subscriber: str
    event_type: str
    error: PlatformError


@dataclass(slots=True)
class Outcome:
    message: Contract
    result: Any  # the reply as JSON (commands and queries); None for an event
    error: PlatformError | None
    events: list[RecordedEvent]  # appended by the message and all it set off, in log order
    sent: list[Sent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def recorded(self, event_type: type[E]) -> list[E]:
        """The events of one type it appended, as contracts."""
        name = event_type.message_type()
        return [event_type.model_validate(e.data) for e in self.events if e.event_type == name]

    def then(
        self, *expected: Any, result: Any = UNSET, sent: list[Contract] | None = None
    ) -> "Outcome":
        """Check the outcome; an AssertionError says how it differs.

        - `then(SomeError)` or `then("ERROR_CODE")`: refused so, and nothing appended;
        - a query: `then(answer)`, the answer (a model, or its JSON);
        - otherwise `then(*events)`: exactly these events appended, in order (none: nothing);
        - `result=`: a command's result; `sent=[...]`: the messages sent to other services.
        """
        if len(expected) == 1 and _is_error(expected[0]):
            return self._refused(expected[0])
        if self.error is not None:
            raise AssertionError(
                f"{self._name()} was refused with {self.error.code}: {self.error.message}"
            )
        if self.dead_letters:
            raise AssertionError(f"events were refused by subscribers: {self.dead_letters}")
        if isinstance(self.message, Query):
            if len(expected) != 1:
                raise TypeError("then(answer): a query has one answer")
            result = expected[0]
        else:
            self._appended(expected)
        if result is not UNSET:
            _same(result, self.result, f"the result of {self._name()}")
        if sent is not None:
            self._sent(sent)
        return self

    def _refused(self, expected: type[PlatformError] | str) -> "Outcome":
        if self.error is None:
            raise AssertionError(f"{self._name()} was not refused; it answered {self.result!r}")
        if isinstance(expected, str) and self.error.code != expected:
            raise AssertionError(f"refused with {self.error.code}, not {expected}: {self.error}")
        if isinstance(expected, type) and not isinstance(self.error, expected):
            raise AssertionError(f"refused with {type(self.error).__name__}, not {expected}")
        if self.events:
            raise AssertionError(f"refused, yet it appended {_types(self.events)}")
        return self

    def _appended(self, expected: tuple[Any, ...]) -> None:
        wanted = [type(e).message_type() for e in expected]
        if wanted != _types(self.events):
            raise AssertionError(f"appended {_types(self.events)}, expected {wanted}")
        for event, recorded in zip(expected, self.events, strict=True):
            _same(event, recorded.data, f"event {recorded.event_type} (#{recorded.position})")

    def _sent(self, expected: list[Contract]) -> None:
        got, wanted = [s.message_type for s in self.sent], [m.message_type() for m in expected]
        if got != wanted:
            raise AssertionError(f"sent {got}, expected {wanted}")
        for message, sent in zip(expected, self.sent, strict=True):
            _same(message, sent.body, f"the {sent.message_type} sent to {sent.queue}")

    def _name(self) -> str:
        return self.message.message_type()


def _is_error(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, type) and issubclass(value, PlatformError))


def _types(events: list[RecordedEvent]) -> list[str]:
    return [e.event_type for e in events]


def _same(expected: Any, actual: Any, what: str) -> None:
    """`expected` (a model, or JSON) against `actual` JSON, compared as the model reads it."""
    if isinstance(expected, BaseModel):
        actual_model = type(expected).model_validate(actual)
        if actual_model != expected:
            raise AssertionError(
                f"{what} differs:\n  actual   {_show(actual_model)}\n  expected {_show(expected)}"
            )
    elif actual != expected:
        raise AssertionError(f"{what} differs:\n  actual   {actual!r}\n  expected {expected!r}")


def _show(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), sort_keys=True)
