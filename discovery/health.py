"""The health monitor: an instance that misses MISSED_HEARTBEATS heartbeats turns unhealthy.

It runs in every discovery instance; the sweeps are idempotent (a row is turned unhealthy
once, under the service's lock), so several monitors publish each change once. Heartbeats
missed while no monitor ran (discovery was down) are not held against anyone: the count
starts when the monitor does.
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from discovery.registrar import Registrar

if TYPE_CHECKING:
    from pipelines.instance import ServiceInstance

MISSED_HEARTBEATS = 3
CHECKS_PER_INTERVAL = 4  # how soon after the last missed heartbeat an instance is marked
log = logging.getLogger("banyan.discovery.health")


async def monitor_health(instance: "ServiceInstance") -> None:
    """Background task of every discovery instance."""
    assert instance.runtime.store is not None
    registrar = Registrar(instance.runtime.store)
    interval = instance.settings.heartbeat_interval
    started = await registrar.clock()
    while True:
        try:
            await registrar.mark_silent(MISSED_HEARTBEATS * interval, started)
        except Exception:  # the next sweep tries again; the monitor must not die
            log.exception("health sweep failed")
        await asyncio.sleep(interval / CHECKS_PER_INTERVAL)
