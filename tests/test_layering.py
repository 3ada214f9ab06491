"""The SDK stands alone: `pipelines/` never imports the layers that plug into it."""

import argparse
import ast
from pathlib import Path

import pytest

import pipelines

pytestmark = pytest.mark.unit

UPPER_LAYERS = {"projections", "flows", "gateway", "auth", "discovery", "examples"}


def imported_modules(source: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_sdk_imports_no_upper_layer() -> None:
    root = Path(pipelines.__file__).parent
    found = [
        f"{path.relative_to(root.parent)} imports {module}"
        for path in sorted(root.rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in UPPER_LAYERS
    ]
    assert found == []


def test_upper_layers_still_reach_the_banyan_command() -> None:
    from pipelines.cli import parser

    (commands,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"projections", "flows"} <= set(commands.choices)
