import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tunepipe import prediction as predict
from tunepipe.errors import PipelineError
from tunepipe.io import OUTPUT_MARKER, atomic_dir, write_text

pytestmark = pytest.mark.unit


def test_atomic_dir_keeps_the_old_output_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left behind
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("second")
    # A folder atomic_dir wrote for the user carries the marker that lets the next write replace it.
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "b.txt"]


def test_write_text_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "r" / "x.json"
    write_text(path, "{}")
    write_text(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # as open() would create it, not 0600


def test_predict_names_missing_and_empty_text(tmp_path: Path) -> None:
    df = pd.DataFrame({"review": ["good", "  "]})
    # Checked before the model runs: a config is all it needs.
    model = SimpleNamespace(config=SimpleNamespace(architectures=["BertForSequenceClassification"]))
    model.config.problem_type = None
    with pytest.raises(PipelineError, match=r"new.csv: no column 'text'; columns are review"):
        predict.predict_frame(model, None, df, "text", origin="new.csv")
    with pytest.raises(PipelineError, match=r"new.csv: column .review. must hold non-empty text; 1 row\(s\)"):
        predict.predict_frame(model, None, df, "review", origin="new.csv")
