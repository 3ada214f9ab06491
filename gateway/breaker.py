"""A circuit breaker per service: stop sending to a service that keeps failing.

Closed: requests flow, outcomes are counted over a sliding window. Open (after the failure
ratio passes the threshold with enough volume): requests are refused at once with 503
CIRCUIT_BREAKER_OPEN. Half-open (after the cool-down): one trial request decides.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Breaker:
    threshold: float = 0.5
    window: float = 10.0
    cooldown: float = 5.0  # seconds open before one probe request may go through
    min_requests: int = 10
    state: str = CLOSED
    opened_at: float = 0.0
    trial_running: bool = False
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    failures: int = 0  # among `outcomes`: kept as they come and go, not counted per request
    clock: Callable[[], float] = time.monotonic

    def allow(self) -> bool:
        if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown:
            self.state, self.trial_running = HALF_OPEN, False
        if self.state == HALF_OPEN and not self.trial_running:
            self.trial_running = True
            return True
        return self.state == CLOSED

    def release(self) -> None:
        """The allowed request never reached the service: if it was the trial, the next is."""
        if self.state == HALF_OPEN:
            self.trial_running = False

    def record(self, ok: bool) -> None:
        now = self.clock()
        if self.state == HALF_OPEN:
            self._close() if ok else self._open(now)
            return
        self.outcomes.append((now, ok))
        self.failures += not ok
        while now - self.outcomes[0][0] > self.window:
            self.failures -= not self.outcomes.popleft()[1]
        total = len(self.outcomes)
        if total >= self.min_requests and self.failures / total >= self.threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self.trial_running = OPEN, now, False
        self._forget()

    def _close(self) -> None:
        self.state, self.trial_running = CLOSED, False
        self._forget()

    def _forget(self) -> None:
        self.outcomes.clear()
        self.failures = 0


class Breakers:
    def __init__(self, **options: Any) -> None:
        self.options = options
        self.by_service: dict[str, Breaker] = {}

    def get(self, service: str) -> Breaker:
        if service not in self.by_service:
            self.by_service[service] = Breaker(**self.options)
        return self.by_service[service]
