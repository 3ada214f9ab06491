"""How `banyan up` runs the gateway in development."""

from pipelines.http import proxy_arguments
from pipelines.settings import Settings


def development_process(settings: Settings) -> tuple[str, list[str]]:
    port = str(settings.gateway_port)
    argv = ["-m", "uvicorn", "gateway:app", "--port", port]
    return "gateway", [*argv, *proxy_arguments(settings.forwarded_allow_ips)]
