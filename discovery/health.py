"""The health monitor: an instance that misses MISSED_HEARTBEATS heartbeats turns unhealthy,
and one still silent after DISCOVERY_INSTANCE_RETENTION seconds is removed from the registry.

It runs in every discovery instance; the sweeps are idempotent (a row is turned unhealthy or
removed once, under the service's lock), so several monitors publish each change once.
Heartbeats missed while no monitor ran (discovery was down) are not held against anyone: the
count starts when the monitor does, and only instances already unhealthy are removed.
A removal is announced as `ServiceDeregistered`, as a goodbye is: whoever follows the registry's
events (the gateway reloads its routes on them) sees the instance leave. Services stay listed
with their contracts once their last instance is gone, as after the last goodbye.
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from discovery.registrar import Registrar

if TYPE_CHECKING:
    from pipelines.instance import ServiceInstance

MISSED_HEARTBEATS = 3
CHECKS_PER_INTERVAL = 4  # how soon after the last missed heartbeat an instance is marked
REMOVALS_PER_SWEEP = 500  # keeps each sweep short; a backlog is cleared over several sweeps
log = logging.getLogger("banyan.discovery.health")


async def monitor_health(instance: "ServiceInstance") -> None:
    """Background task of every discovery instance."""
    assert instance.runtime.store is not None
    registrar = Registrar(instance.runtime.store)
    interval = instance.settings.heartbeat_interval
    retention = instance.settings.discovery_instance_retention
    started = await registrar.clock()
    while True:
        try:
            await registrar.mark_silent(MISSED_HEARTBEATS * interval, started)
            if retention > 0:
                await registrar.remove_expired(retention, REMOVALS_PER_SWEEP)
        except Exception:  # the next sweep tries again; the monitor must not die
            log.exception("health sweep failed")
        await asyncio.sleep(interval / CHECKS_PER_INTERVAL)
