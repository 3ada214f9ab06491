"""A platform process runs on uvloop, which the platform installs wherever uvloop runs."""

import asyncio
import platform
import sys

from pipelines import eventloop


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_answers_the_coroutine_on_uvloop_where_it_runs() -> None:
    supported = sys.platform != "win32" and platform.python_implementation() == "CPython"
    expected = "uvloop" if supported else "asyncio"
    assert eventloop.run(_loop_module()).split(".")[0] == expected
