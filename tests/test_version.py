"""Registry tags and versions: parsed, written, ordered and bumped in one place (tunepipe.version)."""

from __future__ import annotations

import pytest

from tunepipe.errors import PipelineError
from tunepipe.version import Tag, Version, format_tag, next_version, version_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["v1.2.3", "1.2.3"])
def test_version_parses_with_or_without_v(text: str) -> None:
    assert Version.parse(text) == Version(1, 2, 3)
    assert str(Version.parse(text)) == "v1.2.3"


def test_versions_order_as_numbers_not_text() -> None:
    found = sorted(Version.parse(v) for v in ["v0.10.0", "v0.9.1", "v1.0.0", "v0.9.0"])
    assert [str(v) for v in found] == ["v0.9.0", "v0.9.1", "v0.10.0", "v1.0.0"]
    assert Version.parse("v0.10.0") > Version.parse("v0.9.9")


@pytest.mark.parametrize(
    ("part", "after"), [("patch", "v1.2.4"), ("minor", "v1.3.0"), ("major", "v2.0.0")]
)
def test_bump(part: str, after: str) -> None:
    assert str(Version(1, 2, 3).bump(part)) == after
    assert next_version("v1.2.3", part) == after


def test_first_version() -> None:
    assert next_version(None, "patch") == next_version(None, "minor") == "v0.1.0"
    assert next_version(None, "major") == "v1.0.0"


@pytest.mark.parametrize("text", ["prod", "v1.2", "v1.2.3.4", "1.2.x", "", "model@v1.2.3", "v-1.2.3"])
def test_bad_versions_are_refused(text: str) -> None:
    assert not Version.matches(text)
    with pytest.raises(PipelineError, match="expected vMAJOR.MINOR.PATCH"):
        Version.parse(text)


def test_bad_bump_part_is_refused() -> None:
    with pytest.raises(PipelineError, match="expected one of major, minor, patch"):
        Version(0, 1, 0).bump("micro")
    with pytest.raises(PipelineError, match="expected one of"):
        next_version(None, "micro")


def test_tag_parse_and_format() -> None:
    tag = Tag.parse("model@v1.2.3")
    assert (tag.name, tag.version) == ("model", "v1.2.3")
    assert str(tag) == "model@v1.2.3"
    assert Tag.parse("model@prod").version == "prod"  # a stage stands where a version may
    assert Tag.parse("a@b@c") == Tag("a", "b@c")  # the first @ separates


@pytest.mark.parametrize("text", ["model", "@v1.2.3", "model@", ""])
def test_bad_tags_are_refused(text: str) -> None:
    with pytest.raises(PipelineError, match="expected <name>@<version>"):
        Tag.parse(text)


def test_split_and_format_accept_every_way_a_version_is_written() -> None:
    assert Tag.split("model@v0.1.0") == ("model", "v0.1.0")
    assert Tag.split("v0.1.0") == (None, "v0.1.0")
    assert version_of("model@v0.1.0") == version_of("v0.1.0") == "v0.1.0"
    for given in ("v0.1.0", "0.1.0", "model@v0.1.0", "model@0.1.0"):
        assert format_tag("model", given) == "model@v0.1.0"
