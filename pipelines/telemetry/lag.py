"""How far the log's readers (the relay, projections) are behind it, in seconds."""

from pipelines.database import Pool

# the first event a reader at `position` has yet to take: its age is the reader's lag
AGE_AFTER = (
    "SELECT EXTRACT(EPOCH FROM now() - occurred_at)::float8 FROM events "
    "WHERE position > $1 ORDER BY position LIMIT 1"
)


async def seconds_behind(pool: Pool, position: int) -> float:
    """Age of the oldest event after `position`; 0 when the reader is up to date."""
    age = await pool.fetchval(AGE_AFTER, position)
    return max(0.0, float(age)) if age is not None else 0.0
