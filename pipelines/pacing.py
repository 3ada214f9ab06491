"""At most once per interval: housekeeping that rides along with a process's own work."""

import time

SWEEP_INTERVAL = 300.0  # seconds between one process's sweeps of expired records


class Pacer:
    def __init__(self, interval: float = SWEEP_INTERVAL) -> None:
        self.interval = interval
        self._next = 0.0  # time.monotonic() when it is next due

    def due(self) -> bool:
        """True on the first call, then at most once per interval."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True
