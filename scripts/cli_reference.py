"""Write docs/reference/cli.md from the `tunepipe` typer app, so the CLI reference cannot drift.

It lives in scripts/, not tunepipe/: it imports the command-line app, and tunepipe/ never imports
the CLI layer. The app is found through pyproject's `tunepipe` console script, so the page follows
the command wherever it lives. `python scripts/cli_reference.py` rewrites the page;
`--check` exits 1 when the committed page is stale (tests/test_docs.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "reference" / "cli.md"
HEADER = (
    "# CLI reference\n\n"
    "Generated from the `tunepipe` command by `python scripts/cli_reference.py`; do not edit by hand "
    "(`tests/test_docs.py` fails when this page and the command disagree). "
    "[Getting started](../getting-started.md#the-tunepipe-command) shows the commands in use.\n"
)


def _app() -> typer.Typer:
    """The typer app behind pyproject's `tunepipe` script (`module:function`, app beside it)."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module = importlib.import_module(scripts["tunepipe"].partition(":")[0])
    return module.app


def _text(text: str) -> str:
    """Help text as Markdown: `<input>` is a placeholder, not an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _params(command: Any, ctx: Any) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines.append(f"- `{names}`" + (f": {_text(' '.join(help_text.split()))}" if help_text else ""))
    return lines


def _section(command: Any, ctx: Any, level: str) -> list[str]:
    out = [f"{level} `{ctx.command_path}`", ""]
    if command.help:
        out += [_text(command.help.strip()), ""]
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    out += ["```", usage, "```", "", *_params(command, ctx), ""]
    return out


def render() -> str:
    """The whole page: the top-level options and command list, then one section per command."""
    group = typer.main.get_command(_app())
    # typer vendors its own click: contexts come from the commands, never from `import click`.
    ctx = group.make_context("tunepipe", [], resilient_parsing=True)
    out = [HEADER, *_section(group, ctx, "##")]
    names = group.list_commands(ctx)
    out += ["Commands:", ""]
    for name in names:
        sub = group.get_command(ctx, name)
        assert sub is not None
        out.append(f"- [`{name}`](#tunepipe-{name}): {_text(sub.get_short_help_str(limit=200))}")
    out.append("")
    for name in names:
        sub = group.get_command(ctx, name)
        assert sub is not None
        out += _section(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True), "##")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale; write nothing")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            stale = f"{PAGE.relative_to(REPO)} is stale: run `python scripts/cli_reference.py`"
            print(stale, file=sys.stderr)
            return 1
        return 0
    tmp = PAGE.with_name(f".{PAGE.name}.tmp-{os.getpid()}")
    tmp.write_text(page)
    tmp.replace(PAGE)
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
