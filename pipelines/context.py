"""What a handler sees besides its message: the verified caller, ids, and its aggregates."""

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from pipelines.aggregate import Aggregate
from pipelines.contracts import Contract, Model
from pipelines.database import Pool
from pipelines.errors import Forbidden
from pipelines.eventstore import EventStore, NewEvent, RecordedEvent
from pipelines.identity import Caller
from pipelines.rpc import Response
from pipelines.settings import Settings

A = TypeVar("A", bound=Aggregate)
UNKNOWN_ADDRESS = "unknown"  # a message that did not come through the gateway
# (service, message, correlation id, causation id, idempotency key, timeout) -> reply
Sender = Callable[[str, Contract, str, str, str | None, float], Awaitable[Response]]
Effect = Callable[[], Awaitable[None]]
log = logging.getLogger("banyan.context")


@dataclass(slots=True)
class Context:
    service: str
    message_type: str
    message_id: str
    correlation_id: str
    caller: Caller | None
    store: EventStore
    causation_id: str | None = None
    traceparent: str | None = None
    event: RecordedEvent | None = None  # set for event subscribers: the event being handled
    sender: "Sender | None" = None
    settings: Settings | None = None  # the running instance's settings
    client_address: str = UNKNOWN_ADDRESS  # of the gateway's caller, as the gateway saw it
    replica: Pool | None = None  # a query's: the standby it reads its read model from
    _aggregates: dict[tuple[str, str], Aggregate] = field(default_factory=dict)
    _snapshots_due: list[Aggregate] = field(default_factory=list)
    _after_commit: list[Effect] = field(default_factory=list)

    @property
    def read_pool(self) -> Pool:
        """Where a query reads its read model: the standby serving it, else the primary."""
        return self.replica or self.store.pool

    def owns(self, owner_id: str, *, admin: str) -> bool:
        """Whether the caller may see and act on what `owner_id` owns: it is theirs, or they
        hold the `admin` permission. A query answers NotFound for an object the caller does not
        own, as if it did not exist; a policy returns this."""
        return self.caller is not None and (
            self.caller.user_id == owner_id or self.caller.has(admin)
        )

    def acting_for(self, named: str | None, *, admin: str) -> str:
        """Whom this message acts for: the caller, when it names nobody or themselves; the one
        it names only for a holder of `admin` (anyone else naming another is Forbidden)."""
        if self.caller is None:
            raise Forbidden("only a signed-in caller acts for someone")
        if named is None or named == self.caller.user_id or self.caller.has(admin):
            return named or self.caller.user_id
        raise Forbidden(f"only a holder of {admin} acts for someone else", {"permission": admin})

    def owner_filter(self, named: str | None, *, admin: str) -> str | None:
        """Whose objects a listing shows: for a holder of `admin`, the one named (None: everyone's);
        for anyone else, their own (naming another is Forbidden, as in `acting_for`)."""
        if self.caller is not None and self.caller.has(admin):
            return named
        return self.acting_for(named, admin=admin)

    async def send(
        self,
        service: str,
        message: Contract,
        *,
        key: str | None = None,
        timeout: float = 30.0,
    ) -> Response:
        """Send a command or query to another service, in this message's correlation.

        Its causation is this message (or the event being handled). `key` makes the send
        idempotent: the same key is handled once, however often this handler runs.
        """
        assert self.sender is not None, "this context cannot send messages"
        parent = str(self.event.event_id) if self.event is not None else self.message_id
        return await self.sender(service, message, self.correlation_id, parent, key, timeout)

    async def load(self, cls: type[A], aggregate_id: str) -> A:
        """The aggregate as of its last event (an empty one, version 0, if it has none)."""
        key = (cls.aggregate_type, aggregate_id)
        if key in self._aggregates:
            return self._aggregates[key]  # type: ignore[return-value]
        snapshot = await self.store.load_snapshot(
            cls.aggregate_type, aggregate_id, cls.snapshot_shape
        )
        aggregate = cls.model_validate(snapshot[1]) if snapshot else cls(id=aggregate_id)
        for event in await self.store.read_stream(
            cls.aggregate_type, aggregate_id, aggregate.version
        ):
            aggregate.replay(event.event_type, event.data, event.schema_version)
        if snapshot is None and cls.snapshot_every and aggregate.version >= cls.snapshot_every:
            self._snapshots_due.append(aggregate)  # none of this shape yet: a command keeps one
        self._aggregates[key] = aggregate
        return aggregate

    def create(self, cls: type[A], aggregate_id: str) -> A:
        """A new aggregate, without reading the log: appending fails if the id is taken."""
        aggregate = cls(id=aggregate_id)
        self._aggregates[(cls.aggregate_type, aggregate_id)] = aggregate
        return aggregate

    def new_events(self) -> list[NewEvent]:
        """Take the events the handler recorded, ready to append."""
        metadata = self._metadata()
        out: list[NewEvent] = []
        for aggregate in self._aggregates.values():
            pending = aggregate.take_pending()
            first = aggregate.version - len(pending) + 1
            every = aggregate.snapshot_every
            crossed = pending and every and (first - 1) // every < aggregate.version // every
            if crossed and aggregate not in self._snapshots_due:  # loading may have added it
                self._snapshots_due.append(aggregate)
            out.extend(
                NewEvent(
                    aggregate.aggregate_type,
                    aggregate.id,
                    first + i,
                    event.message_type(),
                    event.model_dump_json(),
                    metadata,
                    schema_version=event.__version__,
                )
                for i, event in enumerate(pending)
            )
        return out

    def after_commit(self, effect: Effect) -> None:
        """Run `effect` once the events the handler recorded are committed, before the reply
        (not if they never are; in a subscriber, once the event's handling is committed). A
        best-effort follow-up: its failure is logged and changes nothing; what must happen
        belongs in an event subscriber."""
        self._after_commit.append(effect)

    async def committed(self) -> None:
        """The events are committed: run the `after_commit` effects (the platform calls it)."""
        effects, self._after_commit = self._after_commit, []
        for effect in effects:
            try:
                await effect()
            except Exception:
                log.exception("an after-commit effect of %s failed", self.message_type)

    def snapshots_due(self) -> list[Aggregate]:
        """Aggregates whose new events crossed a multiple of their `snapshot_every`."""
        return self._snapshots_due

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"service": self.service, "messageType": self.message_type}
        if self.caller is not None:
            meta["userId"] = self.caller.user_id
        if self.traceparent:
            meta["traceparent"] = self.traceparent
        return meta


def dump_result(result: Any) -> str:
    """A handler's return value as JSON text (contracts and models by their wire aliases)."""
    if hasattr(result, "model_dump_json"):
        return str(result.model_dump_json(by_alias=True))
    return json.dumps(result, default=str, separators=(",", ":"))


def kept_result(result: Any, text: str) -> str | None:
    """What is kept of a result (`text`, its JSON) to answer a repeated command: nothing when
    it holds `Sensitive` fields, as secrets are never stored (nor, then, answered twice)."""
    return None if isinstance(result, Model) and _holds_secrets(type(result)) else text


@cache
def _holds_secrets(model: type[Model]) -> bool:
    return bool(model.sensitive_fields())
