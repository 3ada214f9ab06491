"""The misbehaving sample service as `banyan up` runs it: `faststream run tests.ops_probe:app`."""

from tests.sample import service

app = service.app

__all__ = ["app", "service"]
