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


def metrics_ports(settings: Settings) -> dict[str, int]:
    """The METRICS_PORT `banyan up` gives each module's process: METRICS_PORT_BASE + its place
    in SERVICE_MODULES (none when the base is 0)."""
    base = settings.metrics_port_base
    return {name: base + i for i, name in enumerate(module_names(settings))} if base else {}


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
