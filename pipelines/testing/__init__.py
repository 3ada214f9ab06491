"""The test kit: unit-test a service's handlers, projections and flows without any server.

    from pipelines.testing import TestKit, admin, anonymous, user

For integration tests against real servers, see `pipelines.pytest_plugin`.
"""

from pipelines.memory_log import MemoryEventStore
from pipelines.testing.callers import Acting, admin, anonymous, expired, user
from pipelines.testing.kit import Scenario, TestKit, When
from pipelines.testing.outcome import DeadLetter, Outcome, Sent

__all__ = [
    "Acting",
    "DeadLetter",
    "MemoryEventStore",
    "Outcome",
    "Scenario",
    "Sent",
    "TestKit",
    "When",
    "admin",
    "anonymous",
    "expired",
    "user",
]
