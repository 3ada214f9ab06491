"""The background tasks of a process (relay, projection runners, announcer, a service's own),
each restarted with backoff when it fails, and reported while it does: nothing dies silently.

A task that fails is logged with its traceback and started again after a delay that grows
with its consecutive failures. It counts as failing (the process's `/health` says degraded,
naming it) until a restart has run for `RECOVERED_AFTER` seconds. A task that returns has
finished its work (a one-shot set-up) and is not started again.
"""

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from pipelines.retry import backoff_delay
from pipelines.settings import Settings
from pipelines.stopping import closing_share

RECOVERED_AFTER = 30.0  # seconds a restarted task must run before it counts as healthy again
TaskFactory = Callable[[], Awaitable[None]]


@dataclass
class Supervised:
    name: str
    start: TaskFactory
    failures: int = 0  # consecutive
    last_error: str = ""
    running_since: float = 0.0  # time.monotonic() of the current run's start
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def failing(self, now: float, recovered_after: float) -> bool:
        return self.failures > 0 and now - self.running_since < recovered_after


class Supervisor:
    def __init__(
        self, settings: Settings, log: logging.Logger, recovered_after: float = RECOVERED_AFTER
    ) -> None:
        self.settings = settings
        self.log = log
        self.recovered_after = recovered_after
        self.tasks: dict[str, Supervised] = {}

    def run(
        self, name: str, start: TaskFactory, context: contextvars.Context | None = None
    ) -> None:
        """Run `start()` in the background under supervision, as task `name`."""
        supervised = Supervised(name, start)
        self.tasks[name] = supervised
        supervised.task = asyncio.create_task(
            self._keep(supervised), name=f"banyan {name}", context=context
        )

    async def stop(self) -> None:
        await self.cancel(list(self.tasks))

    async def cancel(self, names: Iterable[str]) -> None:
        """Stop the tasks `names` for good."""
        tasks = [
            task
            for name in list(names)
            if (supervised := self.tasks.pop(name, None)) and (task := supervised.task)
        ]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        # a task cancelled in the middle of a query to a hung server may never end
        share = closing_share(self.settings)
        _, stuck = await asyncio.wait(tasks, timeout=share)
        for task in stuck:
            self.log.warning("background task %s did not stop within %g s", task.get_name(), share)

    def failing(self) -> dict[str, str]:
        """The tasks failing now, with their last error."""
        now = time.monotonic()
        after = self.recovered_after
        return {s.name: s.last_error for s in self.tasks.values() if s.failing(now, after)}

    async def _keep(self, supervised: Supervised) -> None:
        while True:
            supervised.running_since = time.monotonic()
            try:
                await supervised.start()
                return
            except Exception as exc:
                await self._failed(supervised, exc)

    async def _failed(self, supervised: Supervised, exc: Exception) -> None:
        now = time.monotonic()
        if now - supervised.running_since >= self.recovered_after:
            supervised.failures = 0  # it had recovered: this is a new failure, not the next
        supervised.failures += 1
        supervised.running_since = now  # failing from now until a restart has run a while
        supervised.last_error = f"{type(exc).__name__}: {exc}"[:500]
        delay = backoff_delay(self.settings, supervised.failures)
        self.log.error(
            "background task %s failed (%d in a row); restarting in %.1fs",
            supervised.name,
            supervised.failures,
            delay,
            exc_info=exc,
            extra={"task": supervised.name},
        )
        await asyncio.sleep(delay)
