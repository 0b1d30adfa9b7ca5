"""The docs site: `mkdocs build --strict` passes offline, the CLI reference is the command's current
help, and the README's links into docs/ land on real pages and headings."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.unit

README = REPO / "README.md"
DOCS = REPO / "docs"


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


def cli_reference() -> ModuleType:
    path = REPO / "scripts" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strict_and_offline(tmp_path: Path) -> None:
    result = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    pages = sorted(p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("*.html"))
    for page in ("index.html", "getting-started.html", "reference/cli.html", "reference/params.html"):
        assert page in pages
    assert (tmp_path / "site" / "search" / "search_index.json").is_file()
    # Nothing the pages load comes from the network: no web fonts, no CDN scripts or styles.
    for page in pages:
        html = (tmp_path / "site" / page).read_text()
        loaded = re.findall(r'<(?:script|link)[^>]*\b(?:src|href)="(https?:[^"]+)"', html)
        assert loaded == [], f"{page} loads {loaded}"


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(REPO / "mkdocs.yml", project)
    page = project / "docs" / "training.md"
    page.write_text(page.read_text() + "\nSee [the devices](production.md#no-such-heading).\n")
    result = build(project / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr


def test_the_cli_reference_is_current() -> None:
    page = DOCS / "reference" / "cli.md"
    assert page.read_text() == cli_reference().render(), "run `python scripts/cli_reference.py`"
    for command in ("run", "status", "predict", "verify", "replay", "deploy"):
        assert f"## `tunepipe {command}`" in page.read_text()


def slugs(markdown: str) -> set[str]:
    """Heading anchors as both mkdocs' toc and GitHub make them for plain headings."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M):
        text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        out.add(re.sub(r"[-\s]+", "-", text))
    return out


def test_the_readme_is_short_and_its_links_into_docs_land() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert len({page for page, _ in links}) >= 8, links
    for page, anchor in links:
        target = REPO / page
        assert target.is_file(), f"README links to {page}, which does not exist"
        if anchor:
            assert anchor in slugs(target.read_text()), f"README links to {page}#{anchor}: no such heading"
