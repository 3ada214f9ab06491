"""The event loop a platform process runs on: uvloop, which the platform installs wherever it
runs (not on Windows), else asyncio's own. uvloop spends less CPU per request; `faststream
run` and uvicorn make the same choice by themselves, so every process of a deployment runs on
the same loop.
"""

import asyncio
import importlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
