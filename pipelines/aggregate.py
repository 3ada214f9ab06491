"""Aggregates: state rebuilt from their own events; new events recorded, then appended.

    class Order(Aggregate):
        status: str = "none"

        @applies(OrderPlaced)
        def placed(self, event: OrderPlaced) -> None:
            self.status = "placed"

A handler changes an aggregate only with `order.record(SomeEvent(...))`, which applies the
event at once and queues it for the append that follows the handler.
"""

import hashlib
import json
from collections.abc import Callable
from types import CodeType
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from pipelines.contracts import Event
from pipelines.upcasting import read_event

E = TypeVar("E", bound=Event)
Applier = Callable[[Any, Any], None]


def applies(event: type[E]) -> Callable[[Callable[[Any, E], None]], Callable[[Any, E], None]]:
    def mark(fn: Callable[[Any, E], None]) -> Callable[[Any, E], None]:
        fn.__applies__ = event  # type: ignore[attr-defined]
        return fn

    return mark


class Aggregate(BaseModel):
    """Base of event-sourced state.

    Every `snapshot_every` events (50; 0: never) the platform keeps a snapshot of the state,
    from which `ctx.load` starts instead of the first event. A snapshot records the class's
    `snapshot_shape` (its fields, the code of its `@applies` methods, their events' schema
    versions): after a change to any, older snapshots are ignored and the events folded again,
    so a snapshot never hides a change of the fold. Raise `snapshot_version` to drop them for
    a reason the shape misses.
    """

    model_config = ConfigDict(validate_assignment=False)

    aggregate_type: ClassVar[str]
    snapshot_every: ClassVar[int] = 50
    snapshot_version: ClassVar[int] = 0
    appliers: ClassVar[dict[str, tuple[type[Event], Applier]]]
    snapshot_shape: ClassVar[str] = ""  # set per class: see `_shape`

    id: str
    version: int = 0
    _pending: list[Event] = PrivateAttr(default_factory=list)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "aggregate_type" not in cls.__dict__:
            cls.aggregate_type = cls.__name__
        cls.appliers = {
            fn.__applies__.message_type(): (fn.__applies__, fn)
            for klass in reversed(cls.__mro__)
            for fn in vars(klass).values()
            if callable(fn) and hasattr(fn, "__applies__")
        }
        cls.snapshot_shape = _shape(cls)

    @property
    def exists(self) -> bool:
        return self.version > 0

    def record(self, event: Event) -> None:
        """Apply a new event now; the platform appends it after the handler returns."""
        self._apply(event)
        self._private()["_pending"].append(event)

    def replay(self, event_type: str, data: dict[str, Any], schema_version: int = 1) -> None:
        """Apply an event read from the log (written at `schema_version` of its class)."""
        entry = self.appliers.get(event_type)
        if entry is not None:
            entry[1](self, read_event(entry[0], data, schema_version))
        self.version += 1

    def _apply(self, event: Event) -> None:
        entry = self.appliers.get(event.message_type())
        if entry is None:
            raise TypeError(f"{type(self).__name__} has no @applies({event.message_type()})")
        entry[1](self, event)
        self.version += 1

    def take_pending(self) -> list[Event]:
        private = self._private()
        pending: list[Event] = private["_pending"]
        private["_pending"] = []
        return pending

    def _private(self) -> dict[str, Any]:
        """The private attributes, read directly: `self._pending` goes through pydantic's
        `__getattr__`, which first fails the ordinary lookup (raising and catching an
        AttributeError), a tenth of the CPU of a command's handler."""
        private = self.__pydantic_private__
        assert private is not None  # set by every constructor of a model with private attributes
        return private

    @property
    def pending(self) -> list[Event]:
        return list(self._private()["_pending"])


def _shape(cls: type[Aggregate]) -> str:
    """A digest of what a snapshot of `cls` depends on: its fields, its fold (with the schema
    versions of the events it folds, above 1: a version bump may change what a fold sees),
    its version."""
    digest = hashlib.sha256(json.dumps(cls.model_json_schema(), sort_keys=True).encode())
    digest.update(str(cls.snapshot_version).encode())
    for event_type, (event, fn) in sorted(cls.appliers.items()):
        digest.update(event_type.encode())
        if event.__version__ > 1:
            digest.update(f"@{event.__version__}".encode())
        _digest_code(digest, fn.__code__)
    return digest.hexdigest()[:32]


def _digest_code(digest: "hashlib._Hash", code: CodeType) -> None:
    """Add a function's code, and that of the comprehensions and lambdas inside it, by their
    instructions, constants and names: never by repr, which names a memory address."""
    digest.update(code.co_code + repr(code.co_names).encode())
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            _digest_code(digest, constant)
        else:
            digest.update(repr(constant).encode())
