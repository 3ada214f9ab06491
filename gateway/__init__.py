"""The API gateway: `uvicorn gateway:app --port 3003`."""

from typing import Any


def __getattr__(name: str) -> Any:
    # built on first use, so importing gateway modules does not start a gateway
    if name == "app":
        from gateway.app import create_app

        globals()["app"] = create_app(settle=True)  # a process of its own
        return globals()["app"]
    raise AttributeError(name)
