"""GraphQL errors in the platform's terms: `extensions: {code, correlationId, details}`.

Errors before execution (syntax, unknown fields, limits, bad variables) are VALIDATION_ERROR;
anything unexpected during execution is INTERNAL_ERROR with no detail (never a stack trace).
"""

import logging
from typing import Any

from graphql import GraphQLError

from gateway.invoke import Outcome
from pipelines.errors import PlatformError

log = logging.getLogger("banyan.gateway.graphql")


def platform_error(exc: PlatformError, correlation_id: str) -> GraphQLError:
    return coded(exc.message, exc.code, correlation_id, exc.details)


def outcome_error(outcome: Outcome, correlation_id: str) -> GraphQLError:
    """The error a service (or the gateway) answered with, from its error body."""
    body = outcome.json()
    error = body.get("error", {}) if isinstance(body, dict) else {}
    return coded(
        str(error.get("message", "request failed")),
        str(error.get("code", "INTERNAL_ERROR")),
        str(error.get("correlationId") or correlation_id),
        error.get("details"),
    )


def coded(message: str, code: str, correlation_id: str | None, details: Any = None) -> GraphQLError:
    extensions = {"code": code, "correlationId": correlation_id, "details": details}
    return GraphQLError(message, extensions=extensions)


def expected(error: GraphQLError) -> bool:
    """A platform error, or a request refused before any resolver ran."""
    return error.path is None or "code" in (error.extensions or {})


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = formatted.get("extensions") or {}
    if "code" in extensions:
        return formatted
    if expected(error):
        formatted["extensions"] = {"code": "VALIDATION_ERROR", "details": extensions or None}
    else:
        formatted["message"] = "internal error"
        formatted["extensions"] = {"code": "INTERNAL_ERROR", "details": None}
    return formatted


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ariadne logs every GraphQL error at ERROR; only the unexpected ones deserve it."""

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        if isinstance(msg, GraphQLError) and expected(msg):
            self.logger.debug("graphql error: %s", msg)
        else:
            self.logger.error(msg, *args, **kwargs)


quiet_logger = QuietLogger(log, {})
