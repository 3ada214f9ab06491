"""Rebuild progress: a bar with events/s and ETA on a terminal, plain lines otherwise."""

import sys
import time
from typing import TextIO

BAR = 30
LINE_EVERY = 2.0  # seconds between plain progress lines


class Progress:
    def __init__(self, name: str, out: TextIO | None = None) -> None:
        self.name = name
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.started = time.monotonic()
        self.events = 0
        self._last_line = 0.0

    def update(self, applied: int, position: int, target: int) -> None:
        self.events += applied
        now = time.monotonic()
        if not self.tty and now - self._last_line < LINE_EVERY:
            return
        self._last_line = now
        self.out.write(self.render(position, target, now))
        self.out.flush()

    def render(self, position: int, target: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.events / elapsed
        done = min(1.0, position / target) if target else 1.0
        speed = position / elapsed if position else 0.0
        eta = (target - position) / speed if speed and target > position else 0.0
        text = (
            f"{self.name}: {done:6.1%} {position:,}/{target:,}  {rate:,.0f} events/s  "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        if self.tty:
            filled = int(done * BAR)
            return f"\r[{'#' * filled}{'.' * (BAR - filled)}] {text}"
        return text + "\n"

    def finish(self, message: str) -> None:
        self.out.write(("\n" if self.tty else "") + message + "\n")
        self.out.flush()
