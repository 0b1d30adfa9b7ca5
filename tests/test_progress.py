"""Progress bars: drawn on a terminal (and under a flow that says it writes to one), silent in logs."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from tunepipe import progress

pytestmark = pytest.mark.unit


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def test_a_bar_draws_on_a_terminal_and_is_silent_elsewhere() -> None:
    for terminal in (True, False):
        con, out = console(terminal)
        with progress.bar(5, "inference", console=con) as advance:
            for _ in range(5):
                advance(1)
        if terminal:
            assert re.search(r"inference .*5/5.* examples", out.getvalue())
        else:
            assert out.getvalue() == ""


def test_a_step_line_is_printed_with_its_counts_even_in_a_log() -> None:
    con, out = console(False)
    progress.step_line("search", 2, 5, "trials finished; best accuracy 0.9000", console=con)
    line = out.getvalue()
    assert line.count("\n") == 1 and line.startswith("search ")
    assert "2/5 trials finished; best accuracy 0.9000" in line


def test_inference_shows_a_bar_when_the_output_is_a_terminal(
    tiny_bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunepipe.inference import logits_for

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    encoded = Dataset.from_dict(dict(tok(["a dull film", "a superb cast", "the plot"] * 3)))
    capsys.readouterr()
    logits_for(model, tok, encoded, batch_size=4)
    assert capsys.readouterr().err == ""  # pytest's capture is no terminal
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # what the flow sets when it writes to a terminal
    logits = logits_for(model, tok, encoded, batch_size=4)
    assert logits.shape == (9, 2)
    assert re.search(r"inference .*9/9.* examples", capsys.readouterr().err)
