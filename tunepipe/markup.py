"""User-derived text in rendered outputs: the one place it is escaped.

Labels, column, file, dataset, model and metric names, parameter values and error messages come
from data files, params.yaml or flow parameters. The model card (which model hubs render as HTML),
Prefect's markdown and table artifacts (the UI renders string cells as Markdown) and the HTML run
report show them; written raw, a label `<img src=x onerror=...>` would run in a reader's browser
and `[x](https://...)` would become a link. Text shown through `text`, `code`, `table` or `html`
stays the text it was; `raw` marks Markdown the program wrote itself.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Iterable
from typing import Any

# CommonMark lets any ASCII punctuation be escaped with a backslash; these start inline markup:
# code spans, emphasis, links and images, GFM table cells and strikethrough. `<`, `>` and `&`
# become entities instead: no HTML tag, autolink or entity reference can form.
_ACTIVE = frozenset("\\`*[]|~")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKTICKS = re.compile(r"`+")


class Markdown(str):
    """Markdown that is safe as it stands: escaped by this module, or written by the program."""


class _Code(Markdown):
    """An inline code span. In a table cell its pipes still need a backslash: GFM splits a row into
    cells before it finds code spans (and drops that backslash again)."""


def raw(markdown: str) -> Markdown:
    """Markdown the program wrote itself (no user-derived text in it), passed on as it is."""
    return Markdown(markdown)


def _one_line(value: Any) -> str:
    """A line break would end a table row or start a block (a heading, a list, raw HTML)."""
    return " ".join(str(value).splitlines())


def text(value: Any) -> Markdown:
    """`value` shown as literal text on one line: no HTML, link, image, emphasis or table cell
    can form from it. An `_` between two letters or digits stays as it is: it cannot start or end
    emphasis there, and names like `learning_rate` read as written."""
    if isinstance(value, Markdown):
        return value
    s = _one_line(value)
    out = []
    for i, ch in enumerate(s):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _ACTIVE:
            out.append("\\" + ch)
        elif ch == "_" and not (0 < i < len(s) - 1 and s[i - 1].isalnum() and s[i + 1].isalnum()):
            out.append("\\_")
        else:
            out.append(ch)
    return Markdown("".join(out))


def code(value: Any) -> Markdown:
    """`value` as inline code: shown literally (no HTML, no entities), in a fence of more backticks
    than any run inside it."""
    s = _one_line(value)
    if not s:
        return Markdown("")
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(s)), default=0) + 1)
    pad = " " if s[0] in "` " or s[-1] in "` " else ""
    return _Code(f"{fence}{pad}{s}{pad}{fence}")


def cell(value: Any) -> Markdown:
    """One table cell: a number formatted, None empty, Markdown as built (code spans' pipes
    escaped), anything else as `text`."""
    if value is None:
        return Markdown("")
    if isinstance(value, float):
        return Markdown(f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}")
    if isinstance(value, _Code):
        return Markdown(value.replace("|", "\\|"))
    return text(value)


def table(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> Markdown:
    """A GFM table; every header and row value goes through `cell`."""
    head = [cell(h) for h in header]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def html(value: Any) -> str:
    """`value` as text in HTML (element content or a quoted attribute)."""
    return _html.escape(str(value), quote=True)
