"""Process logging: JSON lines for machines, a readable line on a terminal."""

import json
import logging
import sys
from datetime import UTC, datetime

REDACTED = "***REDACTED***"
SECRET_KEYS = ("password", "token", "secret", "apikey", "api_key", "authorization")
STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def redact(value: object, key: str = "") -> object:
    """Replace the values of secret-looking keys, at any depth."""
    if any(word in key.lower() for word in SECRET_KEYS):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "service": self.service,
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRS and not key.startswith("_"):
                line[key] = redact(value, key)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str) -> None:
    """Set up the root logger once per process, unless the application already did."""
    root = logging.getLogger()
    if any(getattr(h, "banyan", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    handler.banyan = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in ("aio_pika", "aiormq"):  # at DEBUG they log whole messages, secrets included
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))
