"""The load soak's memory verdict: growth beyond 2% flags a process, unless its RSS levels off."""

import math

import pytest

from bench.load import GROWTH_LIMIT, growth

pytestmark = pytest.mark.unit

WARMUP = 360.0  # seconds, as a 30-minute soak counts them
SECONDS = [float(t) for t in range(0, 1800, 5)]


def test_memory_that_levels_off_is_fitted_and_passes() -> None:
    samples = [(t, 100 + 6 * (1 - math.exp(-t / 420))) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.worst > GROWTH_LIMIT  # grew more than 2% after warm-up
    assert judged.plateau is not None
    assert judged.plateau.mb == pytest.approx(106, abs=0.05)
    assert judged.to_come < 0.001
    assert not judged.flagged


def test_memory_that_keeps_growing_is_flagged() -> None:
    samples = [(t, 100 + t / 60 * 0.5) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.plateau is None
    assert judged.flagged


def test_memory_that_levels_off_too_late_is_flagged() -> None:
    """Tau beyond a third of the soak: the curve is still rising at the end."""
    samples = [(t, 100 + 30 * (1 - math.exp(-t / 3000))) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.plateau is None
    assert judged.flagged


def test_flat_memory_passes_without_a_plateau() -> None:
    samples = [(t, 100 + 0.1 * math.sin(t)) for t in SECONDS]
    judged = growth("orders", samples, WARMUP)
    assert judged.worst <= GROWTH_LIMIT
    assert not judged.flagged
