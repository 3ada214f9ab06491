"""README "Your own service, from nothing", as a new user follows it: its files written as they
stand in the README, a passing unit test with no server, a running instance, a rebuild."""

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.contracts import Command, Model, Query
from pipelines.errors import ServiceUnavailable
from pipelines.rpc import RpcClient
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "## Your own service, from nothing"
BLOCK = re.compile(r"```(?:python|toml)\n# (\S+)\n(.*?)```", re.S)
UNREACHABLE = {
    "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:9/",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/test",
    "REDIS_URL": "redis://127.0.0.1:9/0",
}


class LendBook(Command, permissions=["library:lend"]):  # the consumer's own copy of it
    book_id: str


class LoansOf(Query, permissions=["library:read"]):
    member_id: str | None = None


class Loans(Model):
    book_ids: list[str]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    readme = (ROOT / "README.md").read_text()
    chapter = readme.split(CHAPTER, 1)[1].split("\n## ", 1)[0]
    folder = tmp_path_factory.mktemp("library")
    files = BLOCK.findall(chapter)
    assert {name for name, _ in files} == {"library.py", "test_library.py", "pyproject.toml"}
    for name, text in files:
        (folder / name).write_text(text)
    return folder


async def run(folder: Path, *argv: str, **env: str) -> tuple[int, str]:
    child = await asyncio.create_subprocess_exec(
        *argv, cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(child.communicate(), 120)
    return child.returncode or 0, out.decode()


async def test_its_unit_tests_pass_with_no_server(project: Path) -> None:
    code, out = await run(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "test_library.py", **UNREACHABLE)  # fmt: skip
    assert code == 0 and "2 passed" in out, out


async def test_it_runs_and_its_read_model_rebuilds(project: Path, rpc: RpcClient, token) -> None:
    banyan = (sys.executable, "-m", "pipelines.cli", "--app", "library:app")
    code, out = await run(project, *banyan, "db", "migrate")
    assert code == 0, out
    instance = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faststream", "run", "library:app", cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        ann = token("ann", "library:lend", "library:read")
        replies = []

        async def lent_once_started() -> bool:
            try:
                replies.append(await rpc.send("library", LendBook(book_id="b-9"), token=ann))
            except ServiceUnavailable:  # the instance is not consuming yet: nothing sent
                return False
            return True

        await eventually(lent_once_started, timeout=30, what="the instance to lend b-9")
        lent = replies[0]
        assert lent.result() == {"bookId": "b-9"}
        after: dict[str, Any] = {"x-min-position": lent.position}  # a header: no keyword
        loans = await rpc.send("library", LoansOf(), token=ann, **after)
        assert Loans.model_validate(loans.result()).book_ids == ["b-9"]
        code, out = await run(project, *banyan, "projections", "rebuild", "loans_by_member")
        assert code == 0, out

        async def still_lent() -> bool:
            again = await rpc.send("library", LoansOf(), token=ann)
            return bool(Loans.model_validate(again.result()).book_ids == ["b-9"])

        await eventually(still_lent, what="the rebuilt loans_by_member to answer")
    finally:
        instance.terminate()
        await asyncio.wait_for(instance.wait(), 30)
