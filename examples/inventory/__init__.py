"""Example service: `faststream run examples.inventory:app`."""

from examples.inventory.service import service

app = service.app

__all__ = ["app", "service"]
