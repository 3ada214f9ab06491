"""Named points between a run's durable steps, where tests inject a crash.

    started       the run is recorded; its starting event is not yet acknowledged
    journaled     a step is recorded as begun; its message is not yet sent
    answered      the step's answer arrived; it is not yet recorded
    settled       the answer is recorded; the next step has not begun
    compensating  the failure is recorded; no undo is sent yet
    finished      the run's final state is recorded

A run resumes correctly from each of them: that is what makes every step idempotent.
"""

from collections.abc import Callable

Hook = Callable[[str, str], None]  # (point, run id)

_hook: Hook | None = None


def inject(hook: Hook | None) -> None:
    """Call `hook` at every point from now on (None: stop)."""
    global _hook
    _hook = hook


def reached(point: str, run_id: str) -> None:
    if _hook is not None:
        _hook(point, run_id)
