"""How a change load made to the user's rows reads: printed by the stage, shown in the run report
(apart from tunepipe.splitting, so that the report does not import the readers)."""

from __future__ import annotations

from typing import Any


def describe_example(example: dict[str, Any], unit: str = "row") -> str:
    """One of a change's first rows; `unit` is `line` where source_row is a CoNLL file line. A
    blank row has no text to show (None)."""
    text = "" if example["text"] is None else f": {example['text']}"
    return f"{unit} {example['source_row']}{text}" + (
        f" (as {unit} {example['same_as_row']})" if "same_as_row" in example else ""
    )


def describe_change(change: dict[str, Any]) -> str:
    """One line for a change load made."""
    unit = change.get("unit", "row")
    shown = "; ".join(describe_example(e, unit) for e in change.get("examples", []))
    return change["text"] + (f", e.g. {shown}" if shown else "")
