"""Example service running the order flows: `faststream run examples.fulfilment:app`."""

from examples.fulfilment.service import service

app = service.app

__all__ = ["app", "service"]
