"""The auth service over the real bus, database and Redis: users, sessions, roles, tokens."""

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from auth import service
from auth.bootstrap import bootstrap_admin
from auth.contracts import (
    AssignRole,
    Authenticate,
    ChangePassword,
    CreateRole,
    CreateUser,
    GetUser,
    GetUserPermissions,
    GrantPermission,
    ListRoles,
    ListUsers,
    RefreshToken,
    RevokePermission,
    RevokeToken,
    UnassignRole,
)
from auth.events import SessionStarted
from auth.refresh_tokens import new_refresh_token, session_of, token_hash
from auth.resources import resources
from pipelines import Caller, Contract
from pipelines.eventstore import NewEvent
from pipelines.headers import CLIENT_ADDRESS
from pipelines.identity import TokenCodec
from pipelines.rpc import Response, RpcClient
from pipelines.testing.isolation import create_isolated_env, drop_isolated_env
from tests.conftest import eventually
from tests.tcp_proxy import free_port

ADMIN_EMAIL = "admin@banyan.test"
ADMIN_PASSWORD = "first-admin-password"
AUTH_PERMISSIONS = {
    "auth:create-user",
    "auth:manage-users",
    "auth:manage-roles",
    "auth:view-users",
    "auth:view-roles",
}
ORDERS_PERMISSIONS = {"orders:place", "orders:cancel", "orders:read", "orders:admin"}
# and the session and the user's generation, which revocations name (`pipelines.revocation`)
CLAIMS = {"sub", "email", "name", "permissions", "roles", "iat", "exp", "jti", "sid", "gen"}


@pytest.fixture(scope="module")
def auth_settings(settings):
    return settings.model_copy(
        update={
            "admin_email": ADMIN_EMAIL,
            "admin_password": SecretStr(ADMIN_PASSWORD),
            "auth_port": free_port(),
        }
    )


@pytest.fixture(scope="module")
async def auth(auth_settings):
    instance = service.instance(auth_settings)
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture(scope="module")
async def admin(auth, rpc) -> str:
    """The bootstrapped administrator's access token."""
    await eventually(lambda: _claimed(auth.runtime.pool, ADMIN_EMAIL), what="the administrator")
    tokens = await call(rpc, login(ADMIN_EMAIL, ADMIN_PASSWORD))
    return str(tokens["accessToken"])


async def _claimed(pool: Any, email: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT 1 FROM events WHERE aggregate_type = 'EmailClaim' AND aggregate_id = $1", email
        )
    )


async def send(rpc: RpcClient, message: Contract, token: str | None = None, **headers) -> Response:
    return await rpc.send("auth", message, token=token, **headers)


async def call(rpc: RpcClient, message: Contract, token: str | None = None, **headers) -> Any:
    return (await send(rpc, message, token, **headers)).result()


async def error_of(rpc: RpcClient, message: Contract, token: str | None = None) -> dict[str, Any]:
    reply = await send(rpc, message, token)
    assert not reply.ok, reply.json()
    error: dict[str, Any] = reply.json()["error"]
    return error


async def new_user(rpc: RpcClient, token: str, **fields: Any) -> tuple[str, str, str]:
    """(user id, email, password) of a fresh user."""
    email, password = f"{uuid.uuid4().hex[:12]}@example.com", f"pw-{uuid.uuid4().hex}"
    created = await call(
        rpc, CreateUser(email=email, password=password, name="Test User", **fields), token
    )
    return created["userId"], email, password


def login(email: str, password: str) -> Authenticate:
    return Authenticate(email=email, password=password)


def claims_of(access_token: str, settings: Any) -> dict[str, Any]:
    return jwt.decode(access_token, settings.jwt_secret, algorithms=["HS256"])


# --- the first administrator ---------------------------------------------------------------


async def test_admin_is_bootstrapped_once(auth, auth_settings, settings, rpc, admin) -> None:
    claims = claims_of(admin, settings)
    assert set(claims["permissions"]) == AUTH_PERMISSIONS | ORDERS_PERMISSIONS | {"discovery:read"}
    assert claims["roles"] == ["admin"] and claims["email"] == ADMIN_EMAIL

    assert await bootstrap_admin(auth) is False  # what a restart does: finds it
    second = service.instance(auth_settings.model_copy(update={"auth_port": free_port()}))
    await second.start()
    try:
        assert await bootstrap_admin(second) is False
    finally:
        await second.stop()
    counts = dict(
        await auth.runtime.pool.fetch(
            "SELECT event_type, count(*) FROM events WHERE (event_type = 'UserCreated' "
            "AND data->>'email' = $1) OR (event_type = 'EmailClaimed' AND aggregate_id = $1) "
            "OR (event_type = 'RoleCreated' AND aggregate_id = 'admin') GROUP BY event_type",
            ADMIN_EMAIL,
        )
    )
    assert counts == {"UserCreated": 1, "EmailClaimed": 1, "RoleCreated": 1}


# --- creating users ------------------------------------------------------------------------


async def test_create_user_checks_permissions_input_and_uniqueness(rpc, token, admin) -> None:
    creator = token("creator", "auth:create-user")
    user = CreateUser(email="New.Person@Example.com ", password="long-enough", name="New")
    assert (await error_of(rpc, user))["code"] == "INSUFFICIENT_PERMISSIONS"
    assert (await error_of(rpc, user, token("nobody")))["code"] == "INSUFFICIENT_PERMISSIONS"

    created = await call(rpc, user, creator)
    assert created["email"] == "new.person@example.com"
    again = CreateUser(email="NEW.PERSON@example.com", password="other-password", name="Twin")
    assert (await error_of(rpc, again, creator))["code"] == "CONFLICT"

    granting = CreateUser.model_validate(
        {"email": "x@example.com", "password": "long-enough", "name": "X",
         "permissions": ["orders:admin"]}
    )  # fmt: skip
    assert (await error_of(rpc, granting, creator))["code"] == "POLICY_VIOLATION"
    unknown_role = CreateUser(
        email="y@example.com", password="long-enough", name="Y", roles=["no-such-role"]
    )
    assert (await error_of(rpc, unknown_role, admin))["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": "not-an-email", "password": "long-enough", "name": "N"}, "email"),
        ({"email": "short@example.com", "password": "sh0rt!!", "name": "N"}, "password"),
        ({"email": "nine@example.com", "password": "nine-char", "name": "N"}, "password"),
        ({"email": "c@example.com", "password": "qwertyuiop", "name": "N"}, "password"),
        ({"email": "d@example.com", "password": "Password123", "name": "N"}, "password"),
        ({"email": "e@example.com", "password": "e@example.com-2026", "name": "N"}, "password"),
        ({"email": "frankenstein@example.com", "password": "FrankenStein", "name": "N"},
         "password"),
        ({"email": "p@example.com", "password": "long-enough", "name": "N",
          "permissions": ["Orders:*"]}, "permissions.0"),
        ({"email": "q@example.com", "password": "long-enough"}, "name"),
    ],
)  # fmt: skip
async def test_invalid_user_is_refused_without_echoing_input(rpc, admin, body, field) -> None:
    reply = await rpc.request(
        "service.auth.commands.CreateUser",
        json.dumps(body).encode(),
        headers={"x-user-token": admin, "x-message-type": "CreateUser"},
    )
    error = reply.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in error["details"]]
    assert body["password"] not in reply.body.decode()


async def test_a_field_no_version_knows_grants_nothing(rpc, admin) -> None:
    """Services read tolerantly (a newer version's optional fields are ignored); the gateway,
    which validates against the registered schema, refuses such a field outright."""
    email = f"r-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "long-enough", "name": "N", "isAdmin": True}
    reply = await rpc.request(
        "service.auth.commands.CreateUser",
        json.dumps(body).encode(),
        headers={"x-user-token": admin, "x-message-type": "CreateUser"},
    )
    assert reply.ok, reply.json()
    assert (await call(rpc, login(email, "long-enough")))["user"]["permissions"] == []
    assert CreateUser.model_json_schema()["additionalProperties"] is False


async def test_concurrent_creates_of_one_email_make_one_user(rpc, admin) -> None:
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    replies = await asyncio.gather(
        *(send(rpc, CreateUser(email=email, password="long-enough", name=f"R{i}"), admin)
          for i in range(4))
    )  # fmt: skip
    assert sorted(r.ok for r in replies) == [False, False, False, True]
    assert {r.json()["error"]["code"] for r in replies if not r.ok} == {"CONFLICT"}


# --- signing in ----------------------------------------------------------------------------


async def test_authenticate_issues_tokens_with_the_fixed_claims(rpc, settings, admin) -> None:
    user_id, email, password = await new_user(rpc, admin)
    tokens = await call(rpc, login(email.upper(), password))
    assert set(tokens) == {"accessToken", "refreshToken", "expiresIn", "user"}
    assert tokens["user"] == {"id": user_id, "email": email, "permissions": []}
    assert tokens["expiresIn"] == settings.jwt_expiration
    claims = claims_of(tokens["accessToken"], settings)
    assert set(claims) == CLAIMS
    assert (claims["sub"], claims["email"], claims["name"]) == (user_id, email, "Test User")
    assert claims["exp"] - claims["iat"] == settings.jwt_expiration
    assert abs(claims["iat"] - time.time()) < 5


async def test_wrong_password_and_unknown_email_answer_alike(rpc, admin) -> None:
    _, email, password = await new_user(rpc, admin)
    known: list[float] = []
    unknown: list[float] = []
    errors = []
    for i in range(10):
        pairs = [(known, email), (unknown, f"{uuid.uuid4().hex}@example.com")]
        for times, who in pairs[:: 1 if i % 2 else -1]:  # neither always goes first
            started = time.perf_counter()
            errors.append(await error_of(rpc, login(who, "not-the-password")))
            times.append(time.perf_counter() - started)
        await call(rpc, login(email, password))  # a success clears the failure count
    assert {(e["code"], e["message"], e["details"]) for e in errors} == {
        ("INVALID_CREDENTIALS", "invalid email or password", None)
    }
    median = statistics.median(known + unknown)
    difference = abs(statistics.median(known) - statistics.median(unknown))
    assert difference < max(0.25 * median, 0.015), (known, unknown)


async def test_repeated_failures_are_throttled(rpc, settings, admin, monkeypatch) -> None:
    stopped = time.time()  # the throttle's delays do not run out during the test
    monkeypatch.setattr(resources().throttle, "clock", lambda: stopped)
    _, email, password = await new_user(rpc, admin)
    _, other, other_password = await new_user(rpc, admin)
    for _ in range(settings.signin_free_failures + 1):  # from the same (unknown) address
        assert (await error_of(rpc, login(email, "guess")))["code"] == "INVALID_CREDENTIALS"
    throttled = await error_of(rpc, login(email, password))  # even the right one, for now
    assert throttled["code"] == "RATE_LIMIT_EXCEEDED"
    assert 0 < throttled["details"]["retryAfter"] <= settings.signin_max_delay
    assert (await call(rpc, login(other, other_password)))["user"]["email"] == other
    elsewhere = await call(rpc, login(email, password), **{CLIENT_ADDRESS: "192.0.2.7"})
    assert elsewhere["user"]["email"] == email  # another address is not made to wait


# --- refresh tokens ------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_session(auth, rpc, settings, admin) -> None:
    _, email, password = await new_user(rpc, admin)
    first = await call(rpc, login(email, password))
    second = await call(rpc, RefreshToken(refresh_token=first["refreshToken"]))
    assert second["refreshToken"] != first["refreshToken"]
    old, new = claims_of(first["accessToken"], settings), claims_of(second["accessToken"], settings)
    assert new["jti"] != old["jti"] and new["sub"] == old["sub"]

    session_id = session_of(first["refreshToken"])
    assert session_id is not None
    await past_the_grace_window(auth, session_id)
    reused = await error_of(rpc, RefreshToken(refresh_token=first["refreshToken"]))
    assert reused["code"] == "INVALID_TOKEN" and "already used" in reused["message"]
    assert (await error_of(rpc, RefreshToken(refresh_token=second["refreshToken"])))[
        "code"
    ] == "INVALID_TOKEN"  # the thief's (or owner's) newer token died with the session
    reason = await auth.runtime.pool.fetchval(
        "SELECT data->>'reason' FROM events WHERE aggregate_id = $1 "
        "AND event_type = 'SessionRevoked'",
        session_id,
    )
    assert reason == "token-reused"
    for garbage in ("", "x" * 40, f"{'0' * 32}.nope"):
        refresh = RefreshToken.model_construct(refresh_token=garbage)
        assert (await error_of(rpc, refresh))["code"] in {"INVALID_TOKEN", "VALIDATION_ERROR"}


async def past_the_grace_window(auth, session_id: str) -> None:
    """As if the session's last refresh happened a minute ago."""
    await auth.runtime.pool.execute(
        "UPDATE events SET data = jsonb_set(data::jsonb, '{refreshedAt}', "
        "to_jsonb(extract(epoch FROM now())::int - 60)) "
        "WHERE aggregate_id = $1 AND event_type = 'SessionRefreshed'",
        session_id,
    )


async def test_two_tabs_refreshing_one_token_at_once_get_the_same_pair(rpc, admin) -> None:
    _, email, password = await new_user(rpc, admin)
    tokens = await call(rpc, login(email, password))
    refresh = RefreshToken(refresh_token=tokens["refreshToken"])
    replies = await asyncio.gather(send(rpc, refresh), send(rpc, refresh))
    assert all(r.ok for r in replies), [r.json() for r in replies]
    first, second = (r.json()["refreshToken"] for r in replies)
    assert first == second != tokens["refreshToken"]
    again = await call(rpc, refresh)  # still within the grace window: the same pair again
    assert again["refreshToken"] == first
    assert (await send(rpc, RefreshToken(refresh_token=first))).ok  # the session lives on


async def test_expired_refresh_token_is_refused(auth, rpc, admin) -> None:
    user_id, email, password = await new_user(rpc, admin)
    await call(rpc, login(email, password))
    session = await auth.runtime.pool.fetchval(
        "SELECT data FROM events WHERE event_type = 'SessionStarted' AND data->>'userId' = $1",
        user_id,
    )
    expired = new_refresh_token(uuid.uuid4().hex)  # a session as if begun 7 days ago
    started = SessionStarted.model_validate(
        {**session, "sessionId": session_of(expired), "tokenHash": token_hash(expired),
         "expiresAt": int(time.time()) - 1}
    )  # fmt: skip
    await auth.runtime.store.append(
        [NewEvent("Session", started.session_id, 1, "SessionStarted", started.model_dump_json())]
    )
    assert (await error_of(rpc, RefreshToken(refresh_token=expired)))["code"] == "TOKEN_EXPIRED"


async def test_revoke_ends_the_session(rpc, admin) -> None:
    _, email, password = await new_user(rpc, admin)
    tokens = await call(rpc, login(email, password))
    revoke = RevokeToken(refresh_token=tokens["refreshToken"])
    assert await call(rpc, revoke) == {"revoked": True}
    assert await call(rpc, revoke) == {"revoked": False}
    assert not (await send(rpc, RefreshToken(refresh_token=tokens["refreshToken"]))).ok
    assert await call(rpc, RevokeToken(refresh_token="unknown")) == {"revoked": False}


# --- passwords -----------------------------------------------------------------------------


async def test_change_password(rpc, admin) -> None:
    _, email, password = await new_user(rpc, admin)
    tokens = await call(rpc, login(email, password))
    access = tokens["accessToken"]
    change = ChangePassword(current_password=password, new_password="a-new-password")
    assert (await error_of(rpc, change))["code"] == "NO_AUTH_HEADER"
    wrong = ChangePassword(current_password="not-it", new_password="a-new-password")
    assert (await error_of(rpc, wrong, access))["code"] == "INVALID_CREDENTIALS"

    for weak in ("iloveyou123", f"{email}!"):  # common, or containing the email
        refused = ChangePassword.model_construct(current_password=password, new_password=weak)
        assert (await error_of(rpc, refused, access))["code"] == "VALIDATION_ERROR"
    await call(rpc, change, access)
    assert (await error_of(rpc, login(email, password)))["code"] == "INVALID_CREDENTIALS"
    assert (await call(rpc, login(email, "a-new-password")))["user"]["email"] == email
    stale = await error_of(rpc, RefreshToken(refresh_token=tokens["refreshToken"]))
    assert stale["code"] == "INVALID_TOKEN" and "password has changed" in stale["message"]


# --- roles and permissions -----------------------------------------------------------------


async def test_roles_and_grants_reach_queries_and_the_next_refresh(rpc, settings, admin) -> None:
    role = f"support-{uuid.uuid4().hex[:8]}"
    created = await send(rpc, CreateRole(name=role, role_permissions=["orders:read"]), admin)
    assert created.result() == {"name": role, "description": "", "permissions": ["orders:read"]}
    duplicate = CreateRole(name=role, role_permissions=[])
    assert (await error_of(rpc, duplicate, admin))["code"] == "CONFLICT"
    roles = await call(rpc, ListRoles(), admin, **{"x-min-position": created.position})
    assert role in [r["name"] for r in roles["items"]]

    user_id, email, password = await new_user(rpc, admin)
    tokens = await call(rpc, login(email, password))
    assert tokens["user"]["permissions"] == []

    await call(rpc, AssignRole(user_id=user_id, role=role), admin)
    granted = await send(rpc, GrantPermission(user_id=user_id, permission="orders:place"), admin)
    assert granted.result() == {"userId": user_id, "roles": [role], "permissions": ["orders:place"]}
    seen = await call(
        rpc, GetUserPermissions(user_id=user_id), admin, **{"x-min-position": granted.position}
    )
    assert seen == {
        "userId": user_id,
        "roles": [role],
        "permissions": ["orders:place", "orders:read"],
    }
    tokens = await call(rpc, RefreshToken(refresh_token=tokens["refreshToken"]))
    claims = claims_of(tokens["accessToken"], settings)
    assert (claims["permissions"], claims["roles"]) == (["orders:place", "orders:read"], [role])

    await call(rpc, RevokePermission(user_id=user_id, permission="orders:place"), admin)
    taken = await send(rpc, UnassignRole(user_id=user_id, role=role), admin)
    assert taken.result() == {"userId": user_id, "roles": [], "permissions": []}
    tokens = await call(rpc, RefreshToken(refresh_token=tokens["refreshToken"]))
    assert tokens["user"]["permissions"] == []
    seen = await call(
        rpc, GetUserPermissions(user_id=user_id), admin, **{"x-min-position": taken.position}
    )
    assert seen["permissions"] == [] and seen["roles"] == []


async def test_role_commands_check_targets_and_permissions(rpc, token, admin) -> None:
    user_id, _, _ = await new_user(rpc, admin)
    missing_role = AssignRole(user_id=user_id, role="no-such-role")
    assert (await error_of(rpc, missing_role, admin))["code"] == "NOT_FOUND"
    missing_user = GrantPermission(user_id="no-such-user", permission="orders:read")
    assert (await error_of(rpc, missing_user, admin))["code"] == "NOT_FOUND"
    by_viewer = GrantPermission(user_id=user_id, permission="auth:manage-users")
    viewer = token("viewer", "auth:view-users", "auth:manage-roles")
    assert (await error_of(rpc, by_viewer, viewer))["code"] == "INSUFFICIENT_PERMISSIONS"
    role = CreateRole(name="nope", role_permissions=[])
    assert (await error_of(rpc, role, token("x", "auth:manage-users")))[
        "code"
    ] == "INSUFFICIENT_PERMISSIONS"


# --- queries -------------------------------------------------------------------------------


async def test_queries_answer_from_read_models_with_their_permissions(rpc, token, admin) -> None:
    created = await send(
        rpc, CreateUser(email=f"q-{uuid.uuid4().hex[:8]}@example.com", password="long-enough",
                        name="Quinn"), admin,
    )  # fmt: skip
    user_id, email = created.result()["userId"], created.result()["email"]
    viewer = token("viewer", "auth:view-users", "auth:view-roles")
    fresh = {"x-min-position": created.position}
    user = await call(rpc, GetUser(user_id=user_id), viewer, **fresh)
    assert set(user) == {"id", "email", "name", "roles", "permissions", "createdAt"}
    assert (user["email"], user["name"], user["roles"]) == (email, "Quinn", [])
    listed = await call(rpc, ListUsers(email=email.upper()), viewer, **fresh)
    assert listed["total"] == 1 and listed["items"] == [user]
    everyone = await call(rpc, ListUsers(page_size=100), viewer)
    assert ADMIN_EMAIL in [u["email"] for u in everyone["items"]]
    assert "admin" in [r["name"] for r in (await call(rpc, ListRoles(), viewer))["items"]]
    assert (await error_of(rpc, GetUser(user_id="missing"), viewer))["code"] == "NOT_FOUND"

    outsider = token("outsider", "orders:read")
    for query in (GetUser(user_id=user_id), ListUsers(), GetUserPermissions(user_id=user_id)):
        assert (await error_of(rpc, query, outsider))["code"] == "INSUFFICIENT_PERMISSIONS"
    roles_only = token("roles-only", "auth:view-roles")
    assert (await error_of(rpc, ListUsers(), roles_only))["code"] == "INSUFFICIENT_PERMISSIONS"
    assert (await error_of(rpc, ListRoles(), outsider))["code"] == "INSUFFICIENT_PERMISSIONS"


# --- identities on the bus -----------------------------------------------------------------


def forge(case: str, secret: str) -> str:
    now = int(time.time())
    claims = {"sub": "mallory", "permissions": sorted(AUTH_PERMISSIONS), "iat": now}
    valid = {**claims, "exp": now + 60}
    return {
        "alg-none": lambda: jwt.encode(valid, "", algorithm="none"),  # "": no key
        "wrong-signature": lambda: jwt.encode(valid, "x" * 32, "HS256"),
        "expired": lambda: jwt.encode({**claims, "exp": now - 10}, secret, "HS256"),
        "not-yet-valid": lambda: jwt.encode({**valid, "nbf": now + 600}, secret, "HS256"),
        "missing-sub": lambda: jwt.encode({**valid, "sub": None}, secret, "HS256"),
        "garbage": lambda: "not.a.token",
    }[case]()


@pytest.mark.parametrize(
    "case, code",
    [
        ("alg-none", "INVALID_TOKEN"),
        ("wrong-signature", "INVALID_TOKEN"),
        ("expired", "TOKEN_EXPIRED"),
        ("not-yet-valid", "INVALID_TOKEN"),
        ("missing-sub", "INVALID_TOKEN"),
        ("garbage", "INVALID_TOKEN"),
    ],
)
async def test_forged_user_tokens_are_refused(auth, rpc, settings, case, code) -> None:
    forged = forge(case, settings.jwt_secret)
    assert (await error_of(rpc, ListUsers(), forged))["code"] == code


async def test_edited_claims_and_bare_identity_headers_are_not_trusted(auth, rpc, token) -> None:
    header, payload, signature = token("mallory").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["permissions"] = sorted(AUTH_PERMISSIONS)
    edited = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    assert (await error_of(rpc, ListUsers(), edited))["code"] == "INVALID_TOKEN"
    bare = await rpc.send(
        "auth", ListUsers(), **{"x-user-id": "admin", "x-user-permissions": "auth:view-users"}
    )
    assert bare.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- secrets stay secret -------------------------------------------------------------------


async def test_passwords_and_tokens_stay_out_of_logs_events_and_errors(
    auth, rpc, admin, caplog
) -> None:
    for wire in ("aiormq", "aio_pika"):  # they dump whole frames at DEBUG, bodies included
        caplog.set_level(logging.INFO, logger=wire)
    caplog.set_level(logging.DEBUG)  # last: it also sets the capturing handler's level
    email, password = f"s-{uuid.uuid4().hex[:8]}@example.com", f"secret-{uuid.uuid4().hex}"
    await call(rpc, CreateUser(email=email, password=password, name="S"), admin)
    first = await call(rpc, login(email, password))
    second = await call(rpc, RefreshToken(refresh_token=first["refreshToken"]))
    session_id = session_of(first["refreshToken"])
    assert session_id is not None
    await past_the_grace_window(auth, session_id)
    await error_of(rpc, RefreshToken(refresh_token=first["refreshToken"]))  # reuse
    new_password = "secret-two-" + uuid.uuid4().hex
    bad = await error_of(rpc, login(email, new_password))
    third = await call(rpc, login(email, password))  # the reuse ended the first session
    await call(
        rpc, ChangePassword(current_password=password, new_password=new_password),
        third["accessToken"],
    )  # fmt: skip
    secrets = [password, new_password, first["refreshToken"], second["refreshToken"],
               first["accessToken"], second["accessToken"], third["accessToken"]]  # fmt: skip

    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    events = "\n".join(
        f"{r['data']} {r['metadata']}"
        for r in await auth.runtime.pool.fetch("SELECT data::text, metadata::text FROM events")
    )
    assert caplog.records and events
    for secret in secrets:
        assert secret not in logged and secret not in events and secret not in json.dumps(bad)
    assert "$argon2" not in events
    assert CreateUser.sensitive_fields() == {"password"}
    assert ChangePassword.sensitive_fields() == {"currentPassword", "newPassword"}
    assert RefreshToken.sensitive_fields() == RevokeToken.sensitive_fields() == {"refreshToken"}


async def test_tokens_are_not_kept_in_command_results(auth, rpc, admin) -> None:
    _, email, password = await new_user(rpc, admin)
    tokens = await call(rpc, login(email, password))
    kept = await auth.runtime.pool.fetch("SELECT result::text FROM command_results")
    assert not any(tokens["refreshToken"] in (row["result"] or "") for row in kept)


# --- HTTP, and RS256 with a JSON Web Key Set -----------------------------------------------


async def test_http_serves_health_and_no_jwks_under_hs256(auth, auth_settings) -> None:
    base = f"http://127.0.0.1:{auth_settings.auth_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.get("/health")).json()["service"] == "auth"
        missing = await client.get("/.well-known/jwks.json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def rsa_key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public.decode()


def hs256_signed_with(key: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token keyed with `key` (PyJWT refuses to make one with a public key)."""
    signing_input = (
        f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
        f"{b64url(json.dumps(claims).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclasses.dataclass(frozen=True)
class RS256Auth:
    env: dict[str, str]  # the auth process's environment, its private key included
    isolated: dict[str, str]  # its own virtual host and schema
    public: str
    port: int


@contextlib.asynccontextmanager
async def rs256_auth(settings: Any) -> AsyncIterator[RS256Auth]:
    """Auth signing with RS256 in its own process, vhost and schema, its administrator made."""
    isolated = create_isolated_env()
    if "RABBITMQ_URL" not in isolated:
        pytest.skip("needs rabbitmqctl for a second virtual host")
    private, public = rsa_key_pair()
    port = free_port()
    env = {
        **os.environ, **isolated, "JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY": private,
        "JWT_PUBLIC_KEY": public, "AUTH_PORT": str(port), "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faststream", "run", "auth:app", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        schema = isolated["DATABASE_SCHEMA"]
        await eventually(lambda: _admin_in(settings, schema), timeout=60, what="RS256 auth")
        yield RS256Auth(env, isolated, public, port)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await drop_isolated_env(isolated)


async def test_rs256_tokens_verify_with_the_published_jwks(settings) -> None:
    async with (
        rs256_auth(settings) as auth,
        RpcClient(auth.isolated["RABBITMQ_URL"]) as rpc,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{auth.port}", timeout=10) as http,
    ):
        await _check_rs256(rpc, http, auth.public, settings)


async def _admin_in(settings: Any, schema: str) -> bool:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return bool(
            await conn.fetchval(
                f'SELECT 1 FROM "{schema}".events WHERE aggregate_type = $1 AND aggregate_id = $2',
                "EmailClaim",
                ADMIN_EMAIL,
            )
        )
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()


async def _check_rs256(
    rpc: RpcClient, http: httpx.AsyncClient, public: str, hs256_settings: Any
) -> None:
    tokens = await call(rpc, login(ADMIN_EMAIL, ADMIN_PASSWORD))
    access = tokens["accessToken"]
    header = jwt.get_unverified_header(access)
    keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
    assert header["alg"] == "RS256" and [k["kid"] for k in keys] == [header["kid"]]
    claims = jwt.decode(access, jwt.PyJWK(keys[0]).key, algorithms=["RS256"])
    assert set(claims) == CLAIMS and claims["email"] == ADMIN_EMAIL
    assert (await call(rpc, GetUser(user_id=claims["sub"]), access))["email"] == ADMIN_EMAIL

    now = int(time.time())
    forged = {"sub": "mallory", "permissions": sorted(AUTH_PERMISSIONS), "iat": now,
              "exp": now + 60}  # fmt: skip
    confused = hs256_signed_with(public.encode(), forged)
    assert (await error_of(rpc, ListUsers(), confused))["code"] == "INVALID_TOKEN"
    hs_token = TokenCodec(hs256_settings).issue(
        Caller("mallory", permissions=frozenset(AUTH_PERMISSIONS))
    )
    assert (await error_of(rpc, ListUsers(), hs_token))["code"] == "INVALID_TOKEN"
