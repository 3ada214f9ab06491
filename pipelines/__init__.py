"""The Banyan SDK: write contracts and handlers; the platform routes, stores and delivers."""

from pipelines.aggregate import Aggregate, applies
from pipelines.context import Context
from pipelines.contracts import Command, Contract, Event, Model, Query, Sensitive
from pipelines.errors import (
    ConcurrencyError,
    Conflict,
    Forbidden,
    NotFound,
    PlatformError,
    PolicyViolation,
    ValidationError,
)
from pipelines.identity import Caller
from pipelines.service import Service
from pipelines.settings import Settings, get_settings
from pipelines.upcasting import UpcastError, upcaster

__all__ = [
    "Aggregate",
    "Caller",
    "Command",
    "ConcurrencyError",
    "Conflict",
    "Context",
    "Contract",
    "Event",
    "Forbidden",
    "Model",
    "NotFound",
    "PlatformError",
    "PolicyViolation",
    "Query",
    "Sensitive",
    "Service",
    "Settings",
    "UpcastError",
    "ValidationError",
    "applies",
    "get_settings",
    "upcaster",
]
