"""Progress display with rich, for loops that run outside transformers' own tqdm bars.

Bars go to stderr, so stdout stays the command's result. They draw only on a terminal: a stage
under `dvc repro` in a terminal has one; the Prefect flow pipes a stage's output through and sets
TTY_COMPATIBLE=1 (rich's switch) when its own output is a terminal (flows/pipeline.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def _console(console: Any = None) -> Any:
    from rich.console import Console

    return console if console is not None else Console(stderr=True)


@contextlib.contextmanager
def bar(
    total: int, description: str, unit: str = "examples", console: Any = None
) -> Iterator[Callable[[int], None]]:
    """A transient bar; yields `advance(n)`. Silent when the console is not a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = _console(console)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def step_line(label: str, done: int, total: int, note: str = "", console: Any = None) -> None:
    """One printed line with a bar, for steps long enough to print their own output in between
    (a search trial trains with transformers' bars): a live bar would fight with those."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    line = Table.grid(padding=(0, 1))
    line.add_row(label, ProgressBar(total=max(total, 1), completed=done, width=30), f"{done}/{total}", note)
    console = _console(console)
    if not console.is_terminal:  # one line in a log, however long; a terminal wraps at its width
        console = type(console)(file=console.file, width=max(console.width, 500))
    console.print(line)
