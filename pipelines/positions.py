"""How far each projection has got, pushed by NOTIFY, for read-your-writes waits."""

import asyncio
import contextlib
import logging

import asyncpg

from pipelines.database import Pool, connect
from pipelines.settings import Settings

POSITION = "SELECT position FROM projection_positions WHERE name = $1"

log = logging.getLogger("banyan.positions")
REFRESH = 0.25  # seconds between reads of the table while waiting, in case a NOTIFY was lost


def positions_channel(settings: Settings) -> str:
    """Where projection runners announce checkpoints; payload "{name}:{position}"."""
    return f"{settings.database_schema}.projections"


class PositionWatcher:
    def __init__(self, settings: Settings, pool: Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.latest: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._relistening: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        self._conn = await connect(self.settings)
        await self._conn.add_listener(positions_channel(self.settings), self._on_notify)
        self._conn.add_termination_listener(self._on_lost)

    def _on_lost(self, _conn: object) -> None:
        """Its session ended (a restart, a failover to a standby): listen on a new one.
        Waits read the table every REFRESH seconds meanwhile."""
        if not self._stopped:
            self._relistening = asyncio.create_task(self._listen_again())

    async def _listen_again(self) -> None:
        while not self._stopped:
            try:
                await self.start()
                return
            except Exception as exc:  # whatever PostgreSQL answers while it fails over
                log.warning("cannot listen for projection positions again (%s); retrying", exc)
                await asyncio.sleep(self.settings.relay_poll_interval)

    async def stop(self) -> None:
        self._stopped = True
        if self._relistening is not None:
            self._relistening.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        self._raise(name, int(position))

    def _raise(self, name: str, position: int) -> None:
        if position > self.latest.get(name, -1):
            self.latest[name] = position
            self._changed.set()
            self._changed = asyncio.Event()

    async def refresh(self, name: str) -> int:
        position = await self.pool.fetchval(POSITION, name)
        self._raise(name, int(position or 0))
        return self.latest[name]

    async def current(self, name: str) -> int:
        """A position the projection has certainly reached (it may be further already)."""
        if name in self.latest:
            return self.latest[name]
        return await self.refresh(name)

    async def wait(self, name: str, position: int, timeout: float) -> bool:
        """Wait until `name` reached `position`; False if it did not within `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.current(name) < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(REFRESH, remaining))
            if self.latest.get(name, 0) < position:
                await self.refresh(name)
        return True
