"""Migrations are keyed by their owner and file: two services may each ship 0001_init.sql."""

import uuid
from pathlib import Path

import asyncpg
import pytest

from pipelines.database import migrate
from pipelines.testing.isolation import drop_isolated_env


@pytest.fixture
async def fresh(settings):
    schema = f"test_mig_{uuid.uuid4().hex[:10]}"
    yield settings.model_copy(update={"database_schema": schema})
    await drop_isolated_env({"DATABASE_SCHEMA": schema})


def shipped(root: Path, package: str, table: str) -> Path:
    folder = root / package / "migrations"
    folder.mkdir(parents=True)
    (folder / "0001_init.sql").write_text(f"CREATE TABLE {table} (id text PRIMARY KEY);")
    return folder


async def versions(settings) -> set[str]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            f'SELECT version FROM "{settings.database_schema}".schema_migrations'
        )
        return {r["version"] for r in rows}
    finally:
        await conn.close()


async def test_two_services_each_shipping_0001_init_both_apply(fresh, tmp_path) -> None:
    folders = [shipped(tmp_path, "library", "books"), shipped(tmp_path, "lending", "loans")]
    applied = await migrate(fresh, folders)
    assert {"library/0001_init", "lending/0001_init"} <= set(applied)
    conn = await asyncpg.connect(fresh.database_url)
    try:
        for table in ("books", "loans"):
            assert await conn.fetchval("SELECT to_regclass($1)", f"{fresh.database_schema}.{table}")
    finally:
        await conn.close()
    assert await migrate(fresh, folders) == []  # and once only


async def test_a_deployment_keyed_by_file_name_keeps_working(fresh, tmp_path) -> None:
    folder = shipped(tmp_path, "library", "books")
    await migrate(fresh, [folder])
    conn = await asyncpg.connect(fresh.database_url)
    try:  # as the table looked before migrations had owners
        await conn.execute(
            f'UPDATE "{fresh.database_schema}".schema_migrations '
            "SET version = split_part(version, '/', 2)"
        )
    finally:
        await conn.close()
    assert await migrate(fresh, [folder]) == []  # nothing applied twice
    assert "pipelines/0001_event_log" in await versions(fresh)
    assert "library/0001_init" in await versions(fresh)
