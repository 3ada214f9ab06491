"""Test tiers, as markers: `unit` (no servers, seconds), `platform` (the real RabbitMQ,
PostgreSQL and Redis), `drill` (faults and rolling deploys, minutes). `make test` runs them
all; `make test-fast` leaves the drills out (`pytest -m "not drill"`)."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EXAMPLES in item.path.parents:
            item.add_marker(pytest.mark.unit)
        elif not any(item.iter_markers(name) for name in ("unit", "drill")):
            item.add_marker(pytest.mark.platform)
