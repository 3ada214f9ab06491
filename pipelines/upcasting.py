"""Event versions: upcasters turn an older event payload into the next version, on read.

    class OrderPlaced(Event, service="orders", version=2):
        order_id: str
        total: Money

    @upcaster(OrderPlaced, 1)
    def total_became_money(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "total": {"amount": data["total"], "currency": "EUR"}}

An upcaster takes the wire form of one version (the camelCase JSON object stored in the log)
and returns the next. They chain (1 -> 2 -> 3) and live with the event class, so every process
importing the class reads the log the same way. A payload already at the class's version costs
nothing; one from a newer producer is read as it is (unknown fields ignored). A payload no
chain of upcasters reaches fails with an `UpcastError`: the event is stopped on (projections)
or dead-lettered (subscribers), never retried.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from pipelines.contracts import Event, InvalidContract
from pipelines.errors import PlatformError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
E = TypeVar("E", bound=Event)
U = TypeVar("U", bound=Upcaster)


class UpcastError(PlatformError):
    """A stored event cannot be read as its class's version (no path, or an upcaster failed)."""


def upcaster(event: type[Event], version: int) -> Callable[[U], U]:
    """Declare `fn` as the step from `version` of `event` to `version + 1`."""
    if not (isinstance(event, type) and issubclass(event, Event)):
        raise InvalidContract(f"@upcaster takes an Event class, not {event!r}")
    name, current = event.message_type(), event.__version__
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < current:
        raise InvalidContract(
            f"@upcaster({name}, {version!r}): {name} is at version {current}; an upcaster "
            f"starts from a version from 1 to {current - 1}"
        )
    if version in event.__upcasters__:
        raise InvalidContract(f"@upcaster({name}, {version}) is declared twice")

    def register(fn: U) -> U:
        event.__upcasters__[version] = fn
        return fn

    return register


def upcast(event: type[Event], data: dict[str, Any], version: int) -> dict[str, Any]:
    """`data`, written at `version`, as the current version of `event` (newer: unchanged)."""
    stored, current, steps = version, event.__version__, event.__upcasters__
    while version < current:
        step = steps.get(version)
        if step is None:
            raise _missing(event, stored, version)
        try:
            data = step(data)
        except Exception as exc:
            raise _failed(event, stored, version, repr(exc)) from exc
        if not isinstance(data, dict):
            raise _failed(event, stored, version, f"it returned {type(data).__name__}, not a dict")
        version += 1
    return data


def read_event(event: type[E], data: dict[str, Any], version: int) -> E:
    """A stored payload as an instance of `event`, upcast first when it is older."""
    if version < event.__version__:
        data = upcast(event, data, version)
    return event.model_validate(data)


def upcasts_from(event: type[Event]) -> list[int]:
    """The older versions `event` can read: those from which a chain reaches the current one."""
    versions, version = [], event.__version__ - 1
    while version in event.__upcasters__:
        versions.append(version)
        version -= 1
    return sorted(versions)


def _missing(event: type[Event], stored: int, step: int) -> UpcastError:
    name = event.message_type()
    return UpcastError(
        f"{name} stored at version {stored} cannot be read as version {event.__version__}: "
        f"no upcaster from version {step} to {step + 1} (declare @upcaster({name}, {step}))",
        _details(event, stored, step),
    )


def _failed(event: type[Event], stored: int, step: int, why: str) -> UpcastError:
    name = event.message_type()
    return UpcastError(
        f"{name} stored at version {stored}: the upcaster from version {step} to {step + 1} "
        f"failed: {why}",
        _details(event, stored, step),
    )


def _details(event: type[Event], stored: int, step: int) -> dict[str, Any]:
    return {
        "eventType": event.message_type(),
        "storedVersion": stored,
        "currentVersion": event.__version__,
        "step": step,
    }
