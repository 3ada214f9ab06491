"""The auth service: `faststream run auth:app` (HTTP /health and JWKS on :3001)."""

from auth.service import service

app = service.app

__all__ = ["app", "service"]
