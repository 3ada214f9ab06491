"""A platform process runs on uvloop when the `fast` extra is installed, else on asyncio's loop."""

import asyncio
import importlib.util

from pipelines import eventloop


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_answers_the_coroutine_on_the_loop_installed() -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert eventloop.run(_loop_module()).split(".")[0] == expected
