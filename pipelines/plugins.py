"""What the layers above the SDK add to the `banyan` tools, found by entry point.

The SDK never imports projections, flows and the rest; they declare in pyproject.toml
(`[project.entry-points."banyan.commands"]`, `"banyan.status"`,
`"banyan.processes"`) what they contribute.
"""

from importlib.metadata import entry_points
from typing import Any

COMMANDS = "banyan.commands"  # functions adding subcommands: f(groups) -> None
STATUS = "banyan.status"  # (title, async f(settings) -> list[Section]) pairs for `banyan status`
PROCESSES = "banyan.processes"  # f(settings) -> (name, python argv): what `banyan up` also runs


def contributions(group: str) -> list[Any]:
    """The objects the installed packages contribute to `group`, in name order."""
    return [point.load() for point in sorted(entry_points(group=group), key=lambda p: p.name)]
