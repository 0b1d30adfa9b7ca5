"""Registry tags and versions, parsed and written in one place.

A registered version is GTO's tag `<name>@vX.Y.Z`. Users may write a version as `v0.1.0`, `0.1.0`
or `model@v0.1.0`, and where a version is accepted a stage name (`prod`) may stand instead, so
`Tag.split` keeps whatever follows the `@`; `Version` is the semantic version itself (ordered,
bumped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunepipe.errors import PipelineError

SEPARATOR = "@"
PATTERN = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
PARTS = ("major", "minor", "patch")


@dataclass(frozen=True, order=True)
class Version:
    """`vMAJOR.MINOR.PATCH`; ordered as numbers (v0.10.0 after v0.9.0)."""

    major: int
    minor: int
    patch: int

    @staticmethod
    def matches(text: str) -> bool:
        """Whether `text` is a version (`v0.1.0` or `0.1.0`), not a stage name."""
        return PATTERN.fullmatch(text) is not None

    @classmethod
    def parse(cls, text: str) -> Version:
        found = PATTERN.fullmatch(text)
        if found is None:
            raise PipelineError(f"version {text!r}: expected vMAJOR.MINOR.PATCH, e.g. v0.1.0")
        return cls(*(int(part) for part in found.groups()))

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    def bump(self, part: str) -> Version:
        """The next version: `part` is major, minor or patch (register.bump)."""
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        if part == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise PipelineError(f"version part {part!r}: expected one of {', '.join(PARTS)}")

    @classmethod
    def first(cls, part: str) -> Version:
        """A name's first version: v1.0.0 for a major bump, else v0.1.0."""
        if part not in PARTS:
            raise PipelineError(f"version part {part!r}: expected one of {', '.join(PARTS)}")
        return cls(1, 0, 0) if part == "major" else cls(0, 1, 0)


def next_version(latest: str | None, part: str) -> str:
    """The version after `latest` (None: the name has none yet), as its tag writes it."""
    return str(Version.parse(latest).bump(part) if latest else Version.first(part))


@dataclass(frozen=True)
class Tag:
    """`<name>@<version>`; `version` as written (a version, or a stage name before resolving)."""

    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Tag:
        """A tag that must name its artifact (`model@v0.1.0`)."""
        name, version = cls.split(text)
        if name is None or not name or not version:
            raise PipelineError(f"tag {text!r}: expected <name>{SEPARATOR}<version>, e.g. model@v0.1.0")
        return cls(name, version)

    @staticmethod
    def split(text: str) -> tuple[str | None, str]:
        """(`name`, `version`) of `name@version`, (None, `text`) for a bare version or stage."""
        name, sep, version = text.partition(SEPARATOR)
        return (name, version) if sep else (None, text)

    @classmethod
    def of(cls, name: str, version: str) -> Tag:
        """The tag of `version` (`v0.1.0`, `0.1.0` or `name@v0.1.0`; the `v` is added)."""
        bare = cls.split(version)[1]
        return cls(name, bare if bare.startswith("v") else "v" + bare)

    def __str__(self) -> str:
        return f"{self.name}{SEPARATOR}{self.version}"


def version_of(version: str) -> str:
    """What follows the `@` of `name@version`, or `version` itself."""
    return Tag.split(version)[1]


def format_tag(name: str, version: str) -> str:
    """`name@vX.Y.Z` for `version` written any way Tag.of accepts."""
    return str(Tag.of(name, version))
