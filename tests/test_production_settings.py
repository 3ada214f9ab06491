"""Production refuses to start with settings that would let anyone in."""

import asyncio
import os
import sys
from typing import Any

import pytest
from pydantic import SecretStr

from pipelines.production import refuse_private_key, unsafe_settings
from pipelines.settings import Settings

SAFE: dict[str, Any] = {  # keyword arguments of Settings, of several types
    "environment": "production",
    "jwt_secret": "s" * 32,
    "event_signing_key": SecretStr("e" * 32),
    "admin_password": SecretStr("a long and private one"),
    "cors_origins": "https://shop.example.com",
}


def test_safe_production_settings_pass() -> None:
    assert unsafe_settings(Settings(**SAFE)) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"jwt_secret": "dev-secret-key-change-in-production"}, "JWT_SECRET"),
        ({"jwt_secret": "s" * 31}, "JWT_SECRET"),
        ({"jwt_secret": ""}, "JWT_SECRET"),
        (
            {"event_signing_key": SecretStr("dev-event-signing-key-change-in-production")},
            "EVENT_SIGNING_KEY",
        ),
        ({"event_signing_key": SecretStr("e" * 31)}, "EVENT_SIGNING_KEY"),
        ({"event_signing_key": SecretStr("s" * 32)}, "EVENT_SIGNING_KEY"),  # JWT_SECRET's
        ({"development_auth_enabled": True}, "DEVELOPMENT_AUTH_ENABLED"),
        ({"admin_password": SecretStr("admin123")}, "ADMIN_PASSWORD"),
        ({"admin_password": SecretStr("change-me-now")}, "ADMIN_PASSWORD"),
        ({"cors_origins": "https://shop.example.com, *"}, "CORS_ORIGINS"),
        ({"jwt_algorithm": "RS256"}, "JWT_PUBLIC_KEY"),
    ],
)
def test_each_unsafe_setting_is_named(change: dict[str, Any], named: str) -> None:
    (problem,) = unsafe_settings(Settings(**{**SAFE, **change}))
    assert problem.startswith(named)


def test_development_allows_them() -> None:
    assert (
        unsafe_settings(Settings(**{**SAFE, "environment": "development", "jwt_secret": ""})) == []
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "faststream", "run", "examples.orders:app"],
        ["-m", "faststream", "run", "auth:app"],
        ["-m", "uvicorn", "gateway:app", "--port", "0"],
    ],
)
async def test_every_process_refuses_to_start_with_the_defaults(argv: list[str]) -> None:
    env = {**os.environ, "ENVIRONMENT": "production"}
    env.pop("JWT_SECRET", None)
    env.pop("EVENT_SIGNING_KEY", None)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode != 0
    lines = [line for line in (out + err).decode().splitlines() if "refusing to start" in line]
    assert len(lines) == 1, (out + err).decode()[-2000:]
    assert all(name in lines[0] for name in ("JWT_SECRET", "EVENT_SIGNING_KEY", "CORS_ORIGINS"))


RS256 = {**SAFE, "jwt_algorithm": "RS256", "jwt_public_key": "a public key", "jwt_secret": ""}


@pytest.mark.parametrize("process", ["orders", "fulfilment", "discovery", "gateway", "relay"])
def test_only_auth_may_hold_the_private_key_in_production(process: str) -> None:
    holding = Settings(**{**RS256, "jwt_private_key": "the private key"})
    assert unsafe_settings(holding) == []  # auth holds it: the settings alone are fine
    refuse_private_key(holding, "auth")
    refuse_private_key(Settings(**RS256), process)  # the public key only: fine
    with pytest.raises(SystemExit, match=f"refusing to start {process} .*JWT_PRIVATE_KEY"):
        refuse_private_key(holding, process)


async def test_a_service_holding_the_private_key_refuses_to_start() -> None:
    env = {
        **os.environ, "ENVIRONMENT": "production", "JWT_ALGORITHM": "RS256",
        "JWT_PUBLIC_KEY": "a public key", "JWT_PRIVATE_KEY": "the private key",
        "CORS_ORIGINS": "https://shop.example.com",
        "EVENT_SIGNING_KEY": "an event signing key of this test, 32+ bytes",
    }  # fmt: skip
    env.pop("ADMIN_PASSWORD", None)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faststream", "run", "examples.orders:app", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode != 0
    lines = [line for line in (out + err).decode().splitlines() if "refusing to start" in line]
    assert len(lines) == 1, (out + err).decode()[-2000:]
    assert "orders" in lines[0] and "JWT_PRIVATE_KEY" in lines[0]
