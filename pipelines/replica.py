"""A PostgreSQL standby that answers queries (`DATABASE_READ_URL`) when it is recent enough.

The standby replays everything the primary writes, read models and `projection_positions`
included, so its position for a projection says how recent its copy is. A query that needs a
position (read-your-writes, `X-Min-Position`) is read there only once the standby has reached
it; else the primary answers. A standby that does not answer is left alone for a while.
"""

import logging
import time
from dataclasses import dataclass

from pipelines.database import Pool, create_pool
from pipelines.positions import POSITION
from pipelines.settings import Settings

log = logging.getLogger("banyan.replica")
ANSWER_WITHIN = 1.0  # seconds the standby has to say how far it has got
REST = 5.0  # seconds a standby that did not answer is left alone (the primary answers)


@dataclass(frozen=True)
class Copy:
    """A copy of a read model a query reads, and a position that copy has certainly reached."""

    position: int
    pool: Pool | None = None  # the standby's; None: the primary's


class ReadReplica:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._resting_until = 0.0

    @classmethod
    async def open(cls, settings: Settings) -> "ReadReplica | None":
        """The standby of `DATABASE_READ_URL`, if set; it connects on first use, so a standby
        that is down delays no start."""
        if not settings.database_read_url:
            return None
        return cls(await create_pool(settings, dsn=settings.database_read_url, min_size=0))

    async def copy(self, projection: str, min_position: int) -> Copy | None:
        """The standby's copy of `projection` if it has reached `min_position`; None if it has
        not, or does not answer."""
        if time.monotonic() < self._resting_until:
            return None
        try:
            async with self.pool.acquire(timeout=ANSWER_WITHIN) as conn:
                position = await conn.fetchval(POSITION, projection, timeout=ANSWER_WITHIN)
        except Exception as exc:  # whatever a standby going away answers: the primary does
            log.warning("the read standby does not answer (%r); primary only for %gs", exc, REST)
            self._resting_until = time.monotonic() + REST
            return None
        if position is None or position < min_position:
            return None
        return Copy(int(position), self.pool)

    async def close(self) -> None:
        await self.pool.close()
