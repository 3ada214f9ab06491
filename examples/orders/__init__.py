"""Example service: `faststream run examples.orders:app`."""

from examples.orders.service import service

app = service.app

__all__ = ["app", "service"]
