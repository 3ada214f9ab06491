"""What production refuses: settings that would let anyone sign tokens or events, pose as a
user or call the gateway from any site. Every process checks them when it reads its settings;
with RS256, every process but auth also refuses to hold the private key."""

from typing import TYPE_CHECKING

from pipelines.token_issuer import TOKEN_ISSUER  # the one process signing tokens under RS256

if TYPE_CHECKING:
    from pipelines.settings import Settings

DEVELOPMENT_JWT_SECRET = "dev-secret-key-change-in-production"
DEVELOPMENT_EVENT_SIGNING_KEY = "dev-event-signing-key-change-in-production"
MIN_SECRET_BYTES = 32
MIN_ADMIN_PASSWORD = 12
# passwords the project's own files show as examples
DOCUMENTED_PASSWORDS = frozenset(
    {"admin123", "change-me-now", "change-me-admin-password", "admin", "password"}
)


def unsafe_settings(settings: "Settings") -> list[str]:
    """Each setting production must not run with, and why (none outside production)."""
    if settings.environment != "production":
        return []
    problems = []
    secret = settings.jwt_secret
    if settings.jwt_algorithm == "HS256" and _weak(secret, DEVELOPMENT_JWT_SECRET):
        problems.append(
            f"JWT_SECRET must be a secret of your own of at least {MIN_SECRET_BYTES} bytes"
        )
    signing_key = settings.event_signing_key.get_secret_value()
    if _weak(signing_key, DEVELOPMENT_EVENT_SIGNING_KEY) or signing_key == secret:
        problems.append(
            f"EVENT_SIGNING_KEY must be a secret of your own of at least {MIN_SECRET_BYTES} "
            "bytes, not JWT_SECRET"
        )
    if settings.jwt_algorithm == "RS256" and not settings.jwt_public_key:
        problems.append("JWT_PUBLIC_KEY must be set with JWT_ALGORITHM=RS256")
    if settings.development_auth_enabled:
        problems.append("DEVELOPMENT_AUTH_ENABLED must be false")
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    if password is not None and (
        password in DOCUMENTED_PASSWORDS or len(password) < MIN_ADMIN_PASSWORD
    ):
        problems.append(
            f"ADMIN_PASSWORD must not be a documented example and have at least "
            f"{MIN_ADMIN_PASSWORD} characters"
        )
    if "*" in (origin.strip() for origin in settings.cors_origins.split(",")):
        problems.append("CORS_ORIGINS must list the sites allowed to call the gateway, not *")
    return problems


def _weak(secret: str, default: str) -> bool:
    return secret == default or len(secret.encode()) < MIN_SECRET_BYTES


def refuse_unsafe(settings: "Settings") -> None:
    """Exit (status 1, one line naming each setting) when production runs with unsafe ones."""
    if problems := unsafe_settings(settings):
        raise SystemExit("refusing to start with ENVIRONMENT=production: " + "; ".join(problems))


def refuse_private_key(settings: "Settings", process: str) -> None:
    """Exit when `process`, not auth, holds the RS256 private key in production: whoever
    holds it can sign any token, so only auth may."""
    if (
        settings.environment == "production"
        and settings.jwt_algorithm == "RS256"
        and settings.jwt_private_key
        and process != TOKEN_ISSUER
    ):
        raise SystemExit(
            f"refusing to start {process} with ENVIRONMENT=production: JWT_PRIVATE_KEY must "
            f"be held by {TOKEN_ISSUER} only (give {process} JWT_PUBLIC_KEY, and "
            "SERVICE_CREDENTIAL if it calls others)"
        )
