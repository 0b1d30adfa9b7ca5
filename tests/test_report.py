"""The run report (reports/report.html, lineage/<tag>.html) and the `dvc plots` data, for each task."""

from __future__ import annotations

import contextlib
import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, artifacts, copy_project, dvc, run, tunepipe
from tunepipe import catalog, report
from tunepipe.evaluation import score, score_regression, score_tokens
from tunepipe.io import write_json
from tunepipe.params import Threshold

TASKS = ("sequence_classification", "regression", "token_classification")


class Page(HTMLParser):
    """Headings, tables (class -> rows of cell texts), images and every URL the page refers to."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [v for k, v in a.items() if k in ("src", "href", "srcset", "data", "action")]
        if tag == "script":
            self.scripts += 1
        elif tag == "img":
            self.images.append(a)
        elif tag == "h2":
            self._heading = []
        elif tag == "table":
            self._table = a.get("class", "")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        for part in (self._heading, self._cell):
            if part is not None:
                part.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def write_curves(root: Path, points: dict[int, dict[str, float]]) -> None:
    """Training curves as the train stage leaves them: DVCLive's files (catalog.LIVE)."""
    from dvclive import Live

    with contextlib.chdir(root):
        live = Live(dir=str(catalog.LIVE), save_dvc_exp=False, dvcyaml=False)
        for step, values in points.items():
            live.step = step
            for name, value in values.items():
                live.log_metric(name, value)
            live.next_step()
        live.end()


def fake_reports(root: Path, task: str, n: int = 40) -> dict[str, Any]:
    """What the stages before the report leave for `task`: scores from the evaluate stage's own
    scoring functions on 40 synthetic test examples with more than ten mistakes."""
    rng = np.random.default_rng(0)
    (root / "reports").mkdir(parents=True)
    rows = list(range(1, n + 1))
    if task == "token_classification":
        tags = ["O", "B-PER", "I-PER", "B-LOC"]
        tokens = [[f"w{r}_{i}" for i in range(6)] for r in rows]
        refs = [[tags[(r + i) % 4] if (r + i) % 4 != 2 else "B-PER" for i in range(6)] for r in rows]
        preds = [[t if rng.random() > 0.2 else "O" for t in s] for s in refs]
        evaluation = score_tokens(refs, preds, "iob2", {"f1": Threshold(min=0.5)})
        predictions = pd.DataFrame(
            [
                {"source_row": r, "word": i + 1, "token": tok[i], "actual": a[i], "predicted": p[i]}
                for r, tok, a, p in zip(rows, tokens, refs, preds, strict=True)
                for i in range(6)
            ]
        )
        test = pd.DataFrame({"tokens": tokens, "tags": refs, "source_row": rows})
    elif task == "regression":
        actual = rng.uniform(0, 5, n)
        predicted = actual + rng.normal(0, 0.6, n)
        evaluation = score_regression(
            actual, predicted, {"mse": Threshold(max=2.0), "pearson": Threshold(min=0.5)}
        )
        predictions = pd.DataFrame({"source_row": rows, "actual": actual, "predicted": predicted})
        test = pd.DataFrame({"text": [f"text of row {r}" for r in rows], "label": actual, "source_row": rows})
    else:
        labels = ["rotten", "fresh"]
        refs = np.array([r % 2 for r in rows])
        logits = rng.normal(0, 1, (n, 2)) + np.eye(2)[refs] * 0.3
        evaluation = score(refs, logits, labels, {"accuracy": Threshold(min=0.5)})
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        predictions = pd.DataFrame(
            {
                "source_row": rows,
                "actual": [labels[i] for i in refs],
                "predicted": [labels[i] for i in logits.argmax(axis=1)],
                "score": probs.max(axis=1).round(6),
            }
        )
        test = pd.DataFrame({"text": [f"text of row {r}" for r in rows], "label": refs, "source_row": rows})
    metric = "mse" if task == "regression" else "f1" if task == "token_classification" else "accuracy"
    (root / catalog.SPLITS).mkdir(parents=True)
    test.to_parquet(root / catalog.SPLITS / "test.parquet")
    predictions.to_csv(root / catalog.TEST_PREDICTIONS, index=False)
    write_json(root / catalog.EVALUATION, evaluation)
    write_curves(
        root, {5: {"train/loss": 0.9}, 8: {"eval/loss": 0.7, f"eval/{metric}": 0.6}, 10: {"train/loss": 0.6}}
    )
    cut = {"examples": n, "truncated": 3, "share": 0.075, "tokens_median": 12.0, "tokens_max": 80}
    cut |= {"tokens": 480, "tokens_cut": 60, "tokens_share": 0.125}
    write_json(
        root / catalog.VALIDATION_REPORT,
        {
            "success": True,
            "splits": {
                s: {"rows": n, "class_counts": {"fresh": n // 2}, "checks": [{"success": True}] * 4}
                for s in ("train", "validation", "test")
            },
            "truncation": {"max_length": 64, "train": cut, "validation": cut, "test": cut},
            "failures": [],
        },
    )
    return evaluation


def check_page(page: str, task: str, images: int) -> Page:
    """The key elements every report has: metrics against thresholds, embedded charts, validation,
    truncation, ten mistakes; nothing fetched from elsewhere."""
    parsed = parse(page)
    assert {
        "Test metrics against thresholds",
        "Against the production version",
        "Curves and test charts",
        "Data validation",
        "Truncation",
        "Most confident mistakes",
        "Lineage",
    } <= set(parsed.headings)
    metrics = {row[0]: row for row in parsed.tables["metrics"]}
    threshold_row = metrics[
        "mse" if task == "regression" else "f1" if task == "token_classification" else "accuracy"
    ]
    assert threshold_row[2].startswith(("<= ", ">= ")) and threshold_row[3] in ("pass", "FAIL")
    assert len(parsed.images) == images
    assert all(img["src"].startswith("data:image/png;base64,") and img["alt"] for img in parsed.images)
    assert len(parsed.tables["mistakes"]) == 10
    assert [r[0] for r in parsed.tables["validation"]] == ["train", "validation", "test"]
    assert parsed.tables["truncation"][0][1:5] == ["40", "3", "7.5%", "60 of 480 (12.5%)"]
    assert not [u for u in parsed.urls if not u.startswith("data:")] and parsed.scripts == 0
    assert "http://" not in page and "https://" not in page
    return parsed


@pytest.mark.unit
@pytest.mark.parametrize("task", TASKS)
def test_stage_report_and_plots_for_each_task(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation = fake_reports(tmp_path, task)
    page = report.render(report.gather(report.worktree(tmp_path)))
    # loss + validation curves, then: confusion + per-class F1 / scatter / per-entity F1
    parsed = check_page(page, task, images={"sequence_classification": 4}.get(task, 3))
    assert "comparison with the version in production is made at registration" in page
    assert "Added at registration" in page
    mistakes = parsed.tables["mistakes"]
    predictions = pd.read_csv(tmp_path / catalog.TEST_PREDICTIONS)
    if task == "sequence_classification":
        wrong = predictions[predictions.actual != predictions.predicted]
        assert [float(r[4]) for r in mistakes] == pytest.approx(
            sorted(wrong.score, reverse=True)[:10], abs=1e-4
        )
        assert mistakes[0][1] == f"text of row {mistakes[0][0]}"
    elif task == "regression":
        errors = (predictions.predicted - predictions.actual).abs()
        assert [abs(float(r[4])) for r in mistakes] == pytest.approx(
            sorted(errors, reverse=True)[:10], abs=1e-4
        )
    else:
        counts = [int(r[2].split()[0]) for r in mistakes]
        assert counts == sorted(counts, reverse=True) and counts[0] > 1 and "→" in mistakes[0][1]

    # `dvc plots show`: the task's test plot and one validation curve per logged metric, no errors.
    project = tmp_path / "dvc"
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    shutil.copytree(tmp_path / catalog.LIVE, project / catalog.LIVE)
    run(["git", "init", "-q"], project)
    dvc(project, "init", "-q")
    monkeypatch.chdir(project)  # as the evaluate stage runs: in the project root
    report.write_plots(evaluation, pd.read_csv(tmp_path / catalog.TEST_PREDICTIONS))
    shown = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    drawn = {name for name, renders in shown["data"].items() if renders}
    test_plot = {
        "sequence_classification": "reports/plots/confusion.csv",
        "regression": "reports/plots/scatter.csv",
        "token_classification": "reports/plots/f1.csv",
    }[task]
    metric = {"sequence_classification": "accuracy", "regression": "mse", "token_classification": "f1"}[task]
    assert drawn == {
        "reports/live/plots/metrics/train/loss.tsv",
        test_plot,
        "reports/live/plots/metrics/eval/loss.tsv",
        f"reports/live/plots/metrics/eval/{metric}.tsv",
    }


DECISION = {
    "metric": "accuracy",
    "stage": "prod",
    "champion": {"version": "v0.1.0", "score": 0.8125, "scored": "re-scored on today's test split"},
    "challenger": {"version": "v0.1.1", "score": 0.84375},
    "improvement": 0.03125,
    "low": -0.015625,
    "high": 0.078125,
    "confidence": 0.95,
    "resamples": 1000,
    "examples": 40,
    "seed": 0,
    "min_delta": 0.0,
    "require_significant": False,
    "promote": True,
    "reason": "the improvement +0.0312 in accuracy clears min_delta 0.0",
}


@pytest.mark.unit
def test_version_report_has_the_production_comparison_and_lineage(tmp_path: Path) -> None:
    """A registered version's page: both scores, the difference and its interval, the decision,
    and the lineage record's facts (the stage report's placeholders gone)."""
    fake_reports(tmp_path, "sequence_classification")
    record = {
        "artifact": "model",
        "version": "v0.1.1",
        "registered_at": "2026-12-04T18:00:00+00:00",
        "code_commit": "a" * 40,
        "uncommitted_changes": [],
        "data": {"source": {"path": "data/raw/reviews.csv"}, "splits": {"md5": "s" * 32 + ".dir"}},
        "model": {"md5": "m" * 32 + ".dir", "path": "models/model"},
        "pretrained": {"name": "tiny"},
        "training": {"epochs": 10.0},
        "resolved_params": {"task": "sequence_classification", "train": {"seed": 42}},
        "packages": {"torch": "2.13.0"},
        "python": "3.11",
        "prefect_flow_run_id": "run-id",
        "promotion": DECISION,
    }
    page = report.render(report.gather(report.worktree(tmp_path), record, "model@v0.1.1"))
    parsed = check_page(page, "sequence_classification", images=4)
    assert parsed.tables["promotion"] == [
        ["this version", "v0.1.1", "0.8438"],
        ["in prod (re-scored on today's test split)", "v0.1.0", "0.8125"],
    ]
    assert "Difference +0.0312 in accuracy, 95% interval [-0.0156, +0.0781]" in page
    assert "promoted: true" in page
    lineage = dict(parsed.tables["lineage"])
    assert lineage["version"] == "model@v0.1.1" and lineage["model (DVC md5)"] == "m" * 32 + ".dir"
    assert lineage["code commit"] == "a" * 40 and lineage["Prefect flow run"] == "run-id"
    assert "made at registration" not in page and "Added at registration" not in page


@pytest.mark.unit
def test_version_report_shows_guards_rows_and_drift(tmp_path: Path) -> None:
    """The decision's guards and the rows it was made on, and the flow's drift report."""
    import pandas as pd

    from tunepipe import drift

    fake_reports(tmp_path, "sequence_classification")
    guard = {"metric": "recall_macro", "challenger": 0.5, "champion": 0.8, "worse_by": 0.3, "limit": 0.01,
             "passed": False}  # fmt: skip
    decision = DECISION | {
        "promote": False,
        "guards": [guard],
        "test_split": {"path": "data/tokenized/test", "md5": "c" * 32 + ".dir", "rows": 40},
    }
    frame = pd.DataFrame({"text": ["a b", "c d e"], "label": ["neg", "pos"]})
    found = drift.statistics(frame, frame, frame.assign(label="pos"), "sequence_classification")
    found["prod"] = {"version": "v0.1.0", "tag": "model@v0.1.0"}
    found |= {"headline": drift.headline(found), "table": [list(r) for r in drift.lines(found)]}
    record = {"artifact": "model", "version": "v0.1.1", "promotion": decision, "drift": found}
    page = report.render(report.gather(report.worktree(tmp_path), record, "model@v0.1.1"))
    parsed = check_page(page, "sequence_classification", images=4)
    assert parsed.tables["guards"] == [["recall_macro", "0.5000", "0.8000", "0.3000", "0.01", "blocks"]]
    assert f"Both scored on the same rows: 40 test rows (split md5 {'c' * 12})" in page
    assert "<h2>Data drift</h2>" in page and "drift against model@v0.1.0: label shift 0.5000" in page
    label_row = parsed.tables["drift"][1]
    assert label_row[0].startswith("label shift (total variation distance, p ") and label_row[2] == "0.5000"


def chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.e2e
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip(
            "no Chromium on this machine (/usr/bin/chromium or `chromium` on PATH): apt-get install chromium"
        )
    fake_reports(tmp_path, "sequence_classification")
    page = tmp_path / "report.html"
    page.write_text(report.render(report.gather(report.worktree(tmp_path), title="browser check")))
    shot = tmp_path / "shot.png"
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2000",
    ]
    subprocess.run(
        [*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True
    )
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    parsed = parse(dom)
    assert "Test metrics against thresholds" in parsed.headings and len(parsed.tables["mistakes"]) == 10
    assert len(parsed.images) == 4

    from PIL import Image

    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1200, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    # Text, tables and charts: many colours; a blank (white) page has one.
    assert colours is not None and len(colours) > 50


@pytest.mark.e2e
def test_registered_version_report_and_flow_artifact(
    reproduced: tuple[Path, str], tmp_path: Path, prefect_backend: None
) -> None:
    from flows.pipeline import pipeline
    from tunepipe import registry

    project = copy_project(reproduced[0], tmp_path / "project")
    stage_page = (project / catalog.REPORT).read_text()
    check_page_sections = parse(stage_page)
    assert "Against the production version" in check_page_sections.headings
    assert "made at registration" in stage_page

    # `dvc plots show` in a real run: confusion, loss, one curve per metric train logged.
    shown = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    curve_columns = [c for c in catalog.read_curves(report.worktree(project))["eval"] if c != "step"]
    assert {"eval_loss", "eval_accuracy", "eval_f1_macro"} <= set(curve_columns)
    assert {name for name, renders in shown["data"].items() if renders} == {
        "reports/live/plots/metrics/train/loss.tsv",
        "reports/plots/confusion.csv",
        *(f"reports/live/plots/metrics/eval/{c.removeprefix('eval_')}.tsv" for c in curve_columns),
    }

    state = pipeline(root=str(project), return_state=True)
    assert state.is_completed()
    assert "run-report" in artifacts(state)
    result = state.result()
    assert result["report"] == str(project / "lineage/model@v0.1.0.html")
    committed = run(["git", "show", "model@v0.1.0:lineage/model@v0.1.0.html"], project).stdout
    parsed = parse(committed)
    decision = json.loads(run(["git", "show", "model@v0.1.0:lineage/model@v0.1.0.json"], project).stdout)[
        "promotion"
    ]
    promotion = parsed.tables["promotion"]
    assert promotion[0][:2] == ["this version", "v0.1.0"] and html.escape(decision["reason"]) in committed
    lineage = dict(parsed.tables["lineage"])
    assert lineage["version"] == "model@v0.1.0"
    assert lineage["Prefect flow run"] == str(state.state_details.flow_run_id)
    lock = yaml_lock(project)
    assert lineage["model (DVC md5)"] == lock["models/model"]
    assert "Added at registration" not in committed and "made at registration" not in committed

    # `tunepipe report`: the committed page; a version without one is rebuilt from its lineage
    # record and the outputs its dvc.lock pins in the DVC cache.
    out = tmp_path / "again.html"
    tunepipe(project, "report", "v0.1.0", "--out", str(out))
    assert out.read_text() == committed
    rebuilt = report.render(
        report.gather(
            registry.tag_reader(project, "model@v0.1.0"), registry.read_lineage(project, "model", "v0.1.0")
        )
    )
    again = parse(rebuilt)
    assert again.tables == parsed.tables and len(again.images) == len(parsed.images) == 4
    assert "No test predictions found" not in rebuilt and "No validation report found" not in rebuilt
    bad = tunepipe(project, "report", "v9.9.9", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: no registered version model@v9.9.9")


def yaml_lock(project: Path) -> dict[str, str]:
    from tunepipe.dvcrepo import lock_outputs, read_lock

    return {path: entry["md5"] for path, entry in lock_outputs(read_lock(project)).items()}


@pytest.mark.unit
def test_tag_repairs_are_shown() -> None:
    """load.conll.tag_repair: fix changes the user's tags: the report says how many, per split."""
    from tunepipe.report import _validation_section

    facts = {"validation": {"success": True, "splits": {}}, "tags_repaired": {"train": 2, "test": 0}}
    assert "IOB2 tags repaired by load" in _validation_section(facts)
    assert "train 2, test 0" in _validation_section(facts)
    assert "repaired" not in _validation_section(dict(facts, tags_repaired={"train": 0}))


@pytest.mark.unit
def test_rows_added_by_ingest_are_shown(tmp_path: Path) -> None:
    fake_reports(tmp_path, "sequence_classification")
    manifest = tmp_path / catalog.SPLITS / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    incoming = {"data/raw/incoming/week-12.csv": {"rows": 40, "source_rows": [241, 280]}}
    manifest.write_text(json.dumps({"rows": {}, "incoming": incoming}))
    page = report.render(report.gather(report.worktree(tmp_path)))
    assert "Rows added by <code>tunepipe ingest</code> to the source's train rows (load): " in page
    assert "data/raw/incoming/week-12.csv: 40.</p>" in page
