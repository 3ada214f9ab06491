"""Discovery: `faststream run discovery:app` (or `banyan up`)."""

from discovery.service import service

app = service.app

__all__ = ["app", "service"]
