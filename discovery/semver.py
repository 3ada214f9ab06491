"""Service versions are semantic versions: ordered, and breaking changes need a new major."""

import re
from typing import NamedTuple

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


class Version(NamedTuple):
    major: int
    minor: int
    patch: int
    prerelease: tuple[tuple[int, int | str], ...]  # empty for a release

    def sort_key(self) -> tuple[object, ...]:
        # a release sorts after its pre-releases (1.0.0-rc.1 < 1.0.0)
        return (self.major, self.minor, self.patch, not self.prerelease, self.prerelease)


def parse(text: str) -> Version | None:
    match = SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    identifiers = tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in (pre.split(".") if pre else ())
    )
    return Version(int(major), int(minor), int(patch), identifiers)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version `a` is older than, the same as, or newer than `b`."""
    key_a, key_b = _key(a), _key(b)
    return (key_a > key_b) - (key_a < key_b)


def major(text: str) -> int:
    return _parsed(text).major


def same_major(a: str, b: str) -> bool:
    return major(a) == major(b)


def _key(text: str) -> tuple[object, ...]:
    return _parsed(text).sort_key()


def _parsed(text: str) -> Version:
    version = parse(text)
    if version is None:
        raise ValueError(f"not a semantic version: {text!r}")
    return version
