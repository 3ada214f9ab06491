"""The services this deployment runs, found from `SERVICE_MODULES` (each exposes `service`)."""

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.settings import Settings

if TYPE_CHECKING:
    from pipelines.service import Service


class ServiceModuleError(ImportError):
    pass


def module_names(settings: Settings) -> list[str]:
    return [name for m in settings.service_modules.split(",") if (name := m.strip())]


def load_services(settings: Settings) -> list["Service"]:
    """The `service` of each listed module; one that cannot be imported is an error, named."""
    return [_service_of(name) for name in module_names(settings)]


def _service_of(module: str) -> "Service":
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        message = f"SERVICE_MODULES lists {module!r}, which fails to import: {exc}"
        raise ServiceModuleError(message) from exc
    service: Service | None = getattr(found, "service", None)
    if service is None:
        raise ServiceModuleError(f"SERVICE_MODULES lists {module!r}, which has no `service`")
    return service


def migration_folders(settings: Settings) -> list[Path]:
    return [s.migrations for s in load_services(settings) if s.migrations is not None]
