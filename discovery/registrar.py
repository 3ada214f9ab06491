"""Changes to the registry: registrations, heartbeats, goodbyes, silent and long-gone
instances.

Each change runs in one transaction, with the service locked, and appends the events it
publishes in that same transaction; the cached views are invalidated after it commits.
"""

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from discovery import store
from discovery.cache import current_cache
from discovery.compatibility import breaking_changes, log_breaking_changes
from discovery.events import Cause, record
from discovery.semver import compare, major, same_major
from discovery.store import Connection, connection
from discovery.validation import check_registration
from pipelines.contracts import Event
from pipelines.errors import Conflict, PlatformError
from pipelines.eventstore import EventStore
from pipelines.registry import (
    ContractInfo,
    ContractsChanged,
    DeregisterService,
    Heartbeat,
    HeartbeatResult,
    RegisterService,
    RegistrationResult,
    ServiceDeregistered,
    ServiceHealthChanged,
)

log = logging.getLogger("banyan.discovery.registry")
Contracts = dict[str, ContractInfo]


class Registrar:
    def __init__(self, events: EventStore) -> None:
        self.events = events
        self.db = events.pool  # a pool, or the connection of the command being handled
        self._recorded = 0  # events appended by the current transaction

    async def register(self, message: RegisterService, cause: Cause) -> RegistrationResult:
        """Accept an instance and its contracts, or refuse them saying exactly why."""
        try:
            result = await self._register(message, cause)
        except PlatformError as exc:
            log.warning(
                "rejected registration of %s %s (instance %s): %s",
                message.service_name,
                message.version,
                message.instance_id,
                exc.message,
                extra={"code": exc.code, "details": exc.details, **_ids(cause)},
            )
            raise
        log.info(
            "registered %s %s (instance %s)%s",
            message.service_name,
            message.version,
            message.instance_id,
            ", contracts changed" if result.changed else "",
            extra=_ids(cause),
        )
        return result

    async def heartbeat(self, message: Heartbeat, cause: Cause) -> HeartbeatResult:
        name, instance = message.service_name, message.instance_id
        if await store.touch_healthy_instance(self.db, name, instance):
            return HeartbeatResult(known=True)
        async with self._transaction() as conn:
            if await store.lock_service(conn, name) is None:
                return HeartbeatResult(known=False)
            was_healthy = await store.revive_instance(conn, name, instance)
            if was_healthy is False:
                await self._record(conn, name, [_health(name, instance, True, True)], cause)
        if was_healthy is False:
            log.info("%s instance %s is heartbeating again: healthy", name, instance)
        return HeartbeatResult(known=was_healthy is not None)

    async def deregister(self, message: DeregisterService, cause: Cause) -> HeartbeatResult:
        name, instance = message.service_name, message.instance_id
        async with self._transaction() as conn:
            if await store.lock_service(conn, name) is None:
                return HeartbeatResult(known=False)
            was_healthy = await store.remove_instance(conn, name, instance)
            if was_healthy is None:
                return HeartbeatResult(known=False)
            events: list[Event] = [ServiceDeregistered(service_name=name, instance_id=instance)]
            if was_healthy:
                still = await store.any_healthy(conn, name)
                events.append(_health(name, instance, False, still))
            await self._record(conn, name, events, cause)
        log.info("%s instance %s deregistered", name, instance)
        return HeartbeatResult(known=True)

    async def mark_silent(self, silence: float, since: datetime) -> int:
        """Turn instances that sent no heartbeat for `silence` seconds unhealthy."""
        marked = 0
        for name in await store.services_with_silent_instances(self.db, silence, since):
            async with self._transaction() as conn:
                await store.lock_service(conn, name)
                silent = await store.mark_silent_unhealthy(conn, name, silence)
                still = await store.any_healthy(conn, name) if silent else True
                events = [_health(name, instance, False, still) for instance in silent]
                await self._record(conn, name, events, Cause.monitor())
            for instance, seconds in silent.items():
                log.warning(
                    "%s instance %s sent no heartbeat for %.1fs: unhealthy", name, instance, seconds
                )
            marked += len(silent)
        return marked

    async def remove_expired(self, retention: float, batch: int) -> int:
        """Forget up to `batch` unhealthy instances that sent no heartbeat for `retention`
        seconds, each announced as deregistered; how many were forgotten."""
        removed = 0
        for name, candidates in (await store.expired_instances(self.db, retention, batch)).items():
            async with self._transaction() as conn:
                await store.lock_service(conn, name)
                gone = await store.remove_expired_instances(conn, name, candidates, retention)
                events: list[Event] = [
                    ServiceDeregistered(service_name=name, instance_id=i) for i in gone
                ]
                await self._record(conn, name, events, Cause.monitor())
            for instance in gone:
                log.info("%s instance %s silent for over %gs: removed", name, instance, retention)
            removed += len(gone)
        return removed

    async def clock(self) -> datetime:
        """The database's time, the one heartbeats are stamped with."""
        now: datetime = await self.db.fetchval("SELECT now()")
        return now

    async def _register(self, message: RegisterService, cause: Cause) -> RegistrationResult:
        check_registration(message)
        name, version = message.service_name, message.version
        incoming = {c.message_type: c for c in message.contracts}
        try:
            async with self._transaction(invalidate=True) as conn:
                await store.create_service(
                    conn, name, version, message.service_description, message.calls
                )
                current_version = await store.lock_service(conn, name)
                assert current_version is not None
                current = await store.contracts(conn, name, current_version)
                newer = compare(version, current_version) >= 0
                _check_compatible(message, current_version, current, incoming, newer)
                await _check_owners(conn, name, incoming)
                await _store_version(conn, message, incoming, current_version, current, newer)
                changed = newer and incoming != current
                was_healthy = await store.upsert_instance(conn, name, message.instance_id, version)
                await self._record(conn, name, _announcements(message, changed, was_healthy), cause)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != store.OWNER_CONSTRAINT:
                raise
            raise Conflict(
                f"{name}: a message type was just registered by another service; "
                "message types must be unique across services",
                {"service": name},
            ) from exc
        return RegistrationResult(
            accepted=True, service_name=name, version=version, changed=changed
        )

    @contextlib.asynccontextmanager
    async def _transaction(self, invalidate: bool = False) -> AsyncIterator[Connection]:
        """A transaction; once it commits, wake the relay and drop cached views if it changed
        the registry (recorded events; `invalidate`: changed it anyway)."""
        self._recorded = 0
        async with connection(self.db) as conn, conn.transaction():
            yield conn
        if self._recorded:
            self.events.committed()
        if self._recorded or invalidate:
            cache = current_cache()
            if cache is not None:
                await cache.invalidate()

    async def _record(self, conn: Connection, name: str, events: list[Event], cause: Cause) -> None:
        await record(conn, self.events, name, events, cause)
        self._recorded += len(events)


def _check_compatible(
    message: RegisterService,
    current_version: str,
    current: Contracts,
    incoming: Contracts,
    newer: bool,
) -> None:
    """Under one major version, each version must keep its predecessors' callers working;
    across major versions, the events already in the log must stay readable."""
    version = message.version
    old, new = (current, incoming) if newer else (incoming, current)
    compatible = same_major(version, current_version)
    changes = breaking_changes(old, new) if compatible else log_breaking_changes(old, new)
    if not changes:
        return
    relation = (
        f"would break callers of {current_version}"
        if newer
        else f"is older than {current_version}, which would break its callers"
    )
    advice = (
        "Keep the contracts compatible, or release the change under a new major version "
        f"({major(current_version) + 1}.0.0)"
        if compatible
        else "A new major version does not change the log: raise the event's version "
        "and declare upcasters from the stored one"
    )
    raise Conflict(
        f"{message.service_name} {version} {relation}: "
        f"{'; '.join(c.describe() for c in changes)}. {advice}",
        {
            "service": message.service_name,
            "version": version,
            "currentVersion": current_version,
            "breakingChanges": [c.detail() for c in changes],
        },
    )


async def _check_owners(conn: Connection, name: str, incoming: Contracts) -> None:
    owners = await store.owners_elsewhere(conn, name, incoming)
    if not owners:
        return
    taken = ", ".join(f"{t} (owned by {s})" for t, s in sorted(owners.items()))
    raise Conflict(
        f"{name} declares message types another service owns: {taken}",
        {
            "service": name,
            "duplicates": [{"messageType": t, "owner": s} for t, s in sorted(owners.items())],
        },
    )


async def _store_version(
    conn: Connection,
    message: RegisterService,
    incoming: Contracts,
    current_version: str,
    current: Contracts,
    newer: bool,
) -> None:
    """Keep the version's contracts; a version at least as new as the current one becomes it."""
    name, version = message.service_name, message.version
    await store.add_version(conn, name, version)
    same = version == current_version
    stored = current if same else await store.contracts(conn, name, version)
    if stored != incoming or (newer and not same):
        await store.save_contracts(conn, name, version, incoming.values(), current=newer)
    if newer:
        await store.set_current(conn, name, version, message.service_description, message.calls)


def _announcements(
    message: RegisterService, contracts_changed: bool, was_healthy: bool | None
) -> list[Event]:
    events: list[Event] = []
    if contracts_changed:
        events.append(
            ContractsChanged(
                service_name=message.service_name,
                version=message.version,
                message_types=sorted(c.message_type for c in message.contracts),
            )
        )
    if not was_healthy:
        events.append(_health(message.service_name, message.instance_id, True, True))
    return events


def _health(service: str, instance: str, healthy: bool, service_healthy: bool) -> Event:
    return ServiceHealthChanged(
        service_name=service,
        instance_id=instance,
        healthy=healthy,
        service_healthy=service_healthy,
    )


def _ids(cause: Cause) -> dict[str, str | None]:
    return {"correlationId": cause.correlation_id, "causationId": cause.causation_id}
