"""Process logging: JSON lines for machines, a readable line on a terminal.

Each line names the service, correlation id, trace and span and user of the message or request
it was written for (`pipelines.telemetry.context`), and holds no secret: the values of keys
that look secret (password, token, secret, apiKey...) and of fields marked `Sensitive` in any
contract or model are replaced, at any depth of what the line carries.
"""

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from pydantic import BaseModel

from pipelines.contracts import Model, Sensitive
from pipelines.telemetry import context

REDACTED = "***REDACTED***"
SECRET_KEYS = ("password", "token", "secret", "apikey", "api_key", "authorization")
# `color_message`: uvicorn's copy of the message with colour codes
STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "color_message",
}
CONTEXT_FIELDS = ("service", "correlationId", "traceId", "spanId", "userId")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(service)s %(name)s [%(correlationId)s] %(message)s"
SENSITIVE_REFRESH = 10.0  # seconds: contracts are declared at import, rarely later
# secrets inside URLs: a query's token (`/ws?token=...`) and a URL's user info (`//user:pw@`)
URL_SECRETS = (
    (re.compile(r"([?&](?:access_)?token=)[^&\s\"']+", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"(\w+://)[^/@\s:]+:[^/@\s]+@"), r"\1" + REDACTED + "@"),
)

# libraries whose INFO lines are chatter (the Elasticsearch client logs every request): they
# speak at WARNING unless LOG_LEVEL=DEBUG
THIRD_PARTY = ("elastic_transport", "elasticsearch", "urllib3", "httpx", "httpcore", "asyncio",
               "opentelemetry", "websockets", "aio_pika", "aiormq", "faststream")  # fmt: skip
# at DEBUG these log whole messages, secrets included: never below INFO
WHOLE_MESSAGES = ("aio_pika", "aiormq")
# uvicorn's loggers write through the platform's handler; its access lines give way to
# `banyan.access` (pipelines.telemetry.http), which has the duration and correlation id
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")

_sensitive: tuple[float, frozenset[str]] = (0.0, frozenset())


def sensitive_names() -> frozenset[str]:
    """Names (and wire aliases) of every model field marked `Sensitive`."""
    global _sensitive
    now = time.monotonic()
    if now - _sensitive[0] > SENSITIVE_REFRESH:
        _sensitive = (now, frozenset(_sensitive_fields(Model)))
    return _sensitive[1]


def _sensitive_fields(cls: type[Model]) -> set[str]:
    # every subclass is visited, so nested models need no special case; this reads the marker
    # itself, as a model may have a field named `sensitive_fields`
    names: set[str] = set()
    for sub in cls.__subclasses__():
        for name, info in sub.model_fields.items():
            if any(m is Sensitive or isinstance(m, Sensitive) for m in info.metadata):
                names.update((name, info.alias or name))
        names |= _sensitive_fields(sub)
    return names


def redact(value: object, key: str = "") -> object:
    """Replace the values of secret-looking keys and sensitive fields, at any depth."""
    if key and (key in sensitive_names() or any(w in key.lower() for w in SECRET_KEYS)):
        return REDACTED
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def redact_urls(text: str) -> str:
    """`text` with the tokens in query strings and the passwords in URLs replaced."""
    for pattern, replacement in URL_SECRETS:
        text = pattern.sub(replacement, text)
    return text


class UrlSecretsFilter(logging.Filter):
    """Redacts secrets inside URLs in a record's message (access logs, endpoints at start)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_urls(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class ContextFilter(logging.Filter):
    """Stamps each record with the context it was written in (unless `extra` set a field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id, span_id = context.current_ids()
        found = {
            "service": context.current_service(),
            "correlationId": context.correlation_id.get(),
            "traceId": trace_id,
            "spanId": span_id,
            "userId": context.user_id.get(),
        }
        for name, value in found.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            line[name] = getattr(record, name, None)
        line["logger"] = record.name
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRS and key not in line and not key.startswith("_"):
                line[key] = redact(value, key)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """One readable line, for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "correlationId", None) is None:
            record.correlationId = "-"
        return super().format(record)


def handler(stream: TextIO | None = None, text: bool | None = None) -> logging.Handler:
    """A handler writing platform lines (text on a terminal, else JSON) to `stream`."""
    out = logging.StreamHandler(stream or sys.stderr)
    if text is None:
        text = out.stream.isatty()
    out.setFormatter(TextFormatter() if text else JsonFormatter())
    out.addFilter(ContextFilter())
    out.addFilter(UrlSecretsFilter())
    return out


def configure_logging(service: str, level: str) -> None:
    """Set up the root logger once per process, unless the application already did."""
    root = logging.getLogger()
    if any(getattr(h, "banyan", False) for h in root.handlers):
        return
    context.process_service = service
    out = handler()
    out.banyan = True  # type: ignore[attr-defined]
    root.addHandler(out)
    root.setLevel(level.upper())
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.DEBUG
    for chatty in THIRD_PARTY:
        floor = logging.INFO if chatty in WHOLE_MESSAGES else logging.DEBUG
        logging.getLogger(chatty).setLevel(max(quiet, floor))
    for name in UVICORN:
        taken = logging.getLogger(name)
        taken.handlers.clear()
        taken.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
