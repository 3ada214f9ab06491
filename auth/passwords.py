"""Password hashing (argon2id) and the table that keeps the hashes.

Parameters follow OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane): tens of
milliseconds here, hashed in a worker thread so the event loop keeps serving.
"""

import asyncio
import secrets
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipelines.database import Pool

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the email is unknown, so that answer takes as long as a wrong password.
DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))
NO_CREDENTIAL = str(uuid.UUID(int=0))  # a credential id no row has
PURGE_AFTER = "1 hour"  # long enough that no command still in flight uses the row


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches; without a stored hash, false after the same work."""
    try:
        await asyncio.to_thread(HASHER.verify, stored_hash or DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored_hash is not None


async def store_credential(pool: Pool, user_id: str, password: str) -> str:
    """Hash and keep a password; its id goes into the event that makes it current."""
    credential_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO auth_credentials (credential_id, user_id, password_hash) "
        "VALUES ($1::uuid, $2, $3)",
        credential_id,
        user_id,
        await hash_password(password),
    )
    return credential_id


async def load_hash(pool: Pool, credential_id: str) -> str | None:
    found = await pool.fetchval(
        "SELECT password_hash FROM auth_credentials WHERE credential_id = $1::uuid", credential_id
    )
    return str(found) if found is not None else None


async def purge_old_credentials(pool: Pool, user_id: str, keep: list[str]) -> None:
    """Drop a user's superseded hashes (and leftovers of commands that never committed)."""
    await pool.execute(
        "DELETE FROM auth_credentials WHERE user_id = $1 AND credential_id <> ALL($2::uuid[]) "
        f"AND created_at < now() - interval '{PURGE_AFTER}'",
        user_id,
        [k for k in keep if k],
    )
