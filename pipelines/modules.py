"""The services this deployment runs, found from `SERVICE_MODULES` (each exposes `service`)."""

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.settings import Settings

if TYPE_CHECKING:
    from pipelines.service import Service


def load_services(settings: Settings) -> list["Service"]:
    """The `service` of each listed module that is installed (absent ones are skipped)."""
    names = (m.strip() for m in settings.service_modules.split(","))
    return [
        importlib.import_module(name).service
        for name in names
        if name and importlib.util.find_spec(name) is not None
    ]


def migration_folders(settings: Settings) -> list[Path]:
    return [s.migrations for s in load_services(settings) if s.migrations is not None]
