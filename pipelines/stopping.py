"""How a stopping process spends GRACEFUL_TIMEOUT, so that it is gone by then whatever its
servers do: goodbye to discovery, background tasks stopped, messages in flight finished,
connections closed, the last telemetry sent; each part is cut off at the end of its share (a
hung PostgreSQL, RabbitMQ, Redis, Elasticsearch or OTLP endpoint only loses what it did not
take in time)."""

import asyncio
import logging
from types import TracebackType
from typing import Any

from faststream.rabbit import RabbitBroker

from pipelines.settings import Settings

# seconds, at most, for each short part (goodbye, background tasks, connections, telemetry);
# messages in flight get the rest
MAX_SHARE = 1.0
SHORT_PARTS = 4
log = logging.getLogger("banyan.stopping")


def closing_share(settings: Settings) -> float:
    """Seconds for one of the short parts of a stop."""
    return min(MAX_SHARE, settings.graceful_timeout / (SHORT_PARTS + 2))


def draining_share(settings: Settings) -> float:
    """Seconds the messages in flight get to finish: the rest of GRACEFUL_TIMEOUT."""
    return settings.graceful_timeout - SHORT_PARTS * closing_share(settings)


class StoppingBroker(RabbitBroker):
    """A RabbitMQ broker whose stop ends after its share of GRACEFUL_TIMEOUT even when
    RabbitMQ does not answer (FastStream's waits for each consumer's cancel forever). What is
    still in flight then is not acked: RabbitMQ delivers it again."""

    def __init__(self, url: str, stop_timeout: float, **options: Any) -> None:
        super().__init__(url, graceful_timeout=stop_timeout, **options)
        self.stop_timeout = stop_timeout

    async def stop(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> None:
        try:
            await asyncio.wait_for(super().stop(exc_type, exc_val, exc_tb), self.stop_timeout)
        except TimeoutError:
            log.warning("RabbitMQ did not let go within %g s: leaving it", self.stop_timeout)
