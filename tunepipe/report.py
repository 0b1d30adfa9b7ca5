"""The run report: one self-contained HTML page per evaluated model (and per registered version),
plus the data files `dvc plots` draws.

`gather(read)` collects the facts from the pipeline's reports through `read(path) -> bytes | None`
(the working tree, or a registered version's commit and DVC cache); `render(facts)` is a pure
function of them. Charts are matplotlib PNGs embedded as data URIs, so the page needs no network,
no CDN and no other file. The evaluate stage writes reports/report.html; registration adds the
production comparison and the lineage facts (lineage/<tag>.html).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunepipe import catalog
from tunepipe.changes import describe_example
from tunepipe.io import atomic_dir, write_text
from tunepipe.markup import html
from tunepipe.version import format_tag

Reader = Callable[[str], bytes | None]
MISTAKES = 10
TEXT_CHARS = 300  # a mistake's text is cut here in the table

# `dvc plots` data (reports/plots/, an evaluate output). Every task writes every file: a file that
# does not fit the task holds its header only, which `dvc plots show` skips without an error (an
# absent file would be an error). The training curves are DVCLive's (catalog.LIVE, train's output).
PLOT_CONFUSION = "confusion.csv"  # sequence classification: actual, predicted
PLOT_SCATTER = "scatter.csv"  # regression: actual, predicted
PLOT_F1 = "f1.csv"  # token classification: entity type (or tag), f1


def is_eval_metric(column: str) -> bool:
    """A validation metric column of catalog.read_curves' "eval" curve (not its step)."""
    return column.startswith("eval_")


def worktree(root: Path) -> Reader:
    def read(path: str) -> bytes | None:
        file = Path(root) / path
        return file.read_bytes() if file.is_file() else None

    return read


def _json(read: Reader, path: Path) -> Any:
    raw = read(path.as_posix())
    return json.loads(raw) if raw is not None else None


def _csv(read: Reader, path: Path, **kwargs: Any) -> pd.DataFrame | None:
    raw = read(path.as_posix())
    return pd.read_csv(io.BytesIO(raw), **kwargs) if raw else None


def _texts(test: pd.DataFrame | None) -> dict[int, str]:
    """source_row -> the example's text as the model saw it (a pair joined by [SEP])."""
    if test is None or "text" not in test.columns:
        return {}
    text = test["text"].astype(str)
    if "text_pair" in test.columns:
        text = text + " [SEP] " + test["text_pair"].astype(str)
    return dict(zip(test["source_row"].astype(int), text, strict=True))


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."


def mistakes(task: str, predictions: pd.DataFrame, test: pd.DataFrame | None) -> dict[str, Any]:
    """The ten most confident wrong predictions (regression: largest errors; tokens: sentences with
    the most wrong tags), with their texts, so a reviewer sees what the model gets wrong."""
    texts = _texts(test)
    if task == "token_classification":
        rows = []
        for source_row, words in predictions.sort_values(["source_row", "word"]).groupby("source_row"):
            wrong = words["actual"].astype(str) != words["predicted"].astype(str)
            if not wrong.any():
                continue
            shown = " ".join(
                f"{t} [{a}→{p}]" if w else str(t)
                for t, a, p, w in zip(words["token"], words["actual"], words["predicted"], wrong, strict=True)
            )
            rows.append((int(wrong.sum()), len(words), int(source_row), _cut(shown)))
        rows.sort(key=lambda r: (-r[0], -r[0] / r[1], r[2]))
        return {
            "columns": ["source row", "sentence (word [actual→predicted])", "wrong tags"],
            "rows": [[r[2], r[3], f"{r[0]} of {r[1]}"] for r in rows[:MISTAKES]],
            "order": "sentences with the most wrong tags first",
        }
    if task == "regression":
        error = (predictions["predicted"] - predictions["actual"]).astype(float)
        top = predictions.assign(error=error).reindex(error.abs().sort_values(ascending=False).index)
        return {
            "columns": ["source row", "text", "actual", "predicted", "error"],
            "rows": [
                [
                    int(r.source_row),
                    _cut(texts.get(int(r.source_row), "")),
                    f"{r.actual:.4f}",
                    f"{r.predicted:.4f}",
                    f"{r.error:+.4f}",
                ]
                for r in top.head(MISTAKES).itertuples()
            ],
            "order": "largest absolute error first",
        }
    wrong = predictions[predictions["actual"].astype(str) != predictions["predicted"].astype(str)]
    wrong = wrong.sort_values(["score", "source_row"], ascending=[False, True], kind="stable")
    return {
        "columns": ["source row", "text", "actual", "predicted", "confidence"],
        "rows": [
            [
                int(r.source_row),
                _cut(texts.get(int(r.source_row), "")),
                str(r.actual),
                str(r.predicted),
                f"{r.score:.4f}",
            ]
            for r in wrong.head(MISTAKES).itertuples()
        ],
        "order": "wrong predictions, highest softmax confidence first",
    }


def gather(read: Reader, record: dict[str, Any] | None = None, title: str | None = None) -> dict[str, Any]:
    """The facts a report shows, from the reports `read` finds; `record`: a lineage record (a
    registered version: its promotion decision and lineage facts join the page)."""
    evaluation = _json(read, catalog.EVALUATION)
    if evaluation is None and record is not None:  # an older version whose outputs are gone
        evaluation = {"metrics": record["metrics"], "thresholds": record.get("thresholds", [])}
        evaluation["passed"] = all(c["passed"] for c in evaluation["thresholds"])
    if evaluation is None:
        evaluation = {"metrics": {}, "thresholds": [], "passed": None}
    validation = _json(read, catalog.VALIDATION_REPORT) or (record or {}).get("validation")
    task = evaluation.get("task") or ((record or {}).get("resolved_params") or {}).get("task", "")
    predictions = _csv(read, catalog.TEST_PREDICTIONS)
    curves = catalog.read_curves(read)
    raw_test = read((catalog.SPLITS / "test.parquet").as_posix())
    test = pd.read_parquet(io.BytesIO(raw_test)) if raw_test else None
    facts: dict[str, Any] = {
        "title": title or "evaluate stage",
        "task": task,
        "metrics": evaluation["metrics"],
        "thresholds": evaluation["thresholds"],
        "passed": evaluation.get("passed"),
        "per_class": evaluation.get("per_class"),
        "per_type": evaluation.get("per_type"),
        "tag_scheme": evaluation.get("tag_scheme"),
        "confusion": evaluation.get("confusion_matrix"),
        "train_loss": curves["train"],
        "eval_curve": curves["eval"],
        "scatter": None,
        "validation": validation,
        "tags_repaired": (_json(read, catalog.SPLITS / "manifest.json") or {}).get("tags_repaired"),
        "manifest": _json(read, catalog.SPLITS / "manifest.json"),
        "baseline": evaluation.get("baseline"),
        "incoming": (_json(read, catalog.SPLITS / "manifest.json") or {}).get("incoming") or {},
        "mistakes": mistakes(task, predictions, test) if predictions is not None else None,
        "registered": record is not None,
        "promotion": (record or {}).get("promotion"),
        "drift": (record or {}).get("drift"),
        "lineage": lineage_facts(record) if record is not None else None,
    }
    if task == "regression" and predictions is not None:
        facts["scatter"] = {
            "actual": [float(v) for v in predictions["actual"]],
            "predicted": [float(v) for v in predictions["predicted"]],
        }
    return facts


def registration_page(root: Path, record: dict[str, Any], tag: str) -> str:
    """A new version's page: the stage's report plus what only registration knows (the
    production comparison, the lineage record); registry.register commits it."""
    return render(gather(worktree(root), record, tag))


def _hash(entry: Any) -> str:
    return str(entry.get("md5", "")) if isinstance(entry, dict) else ""


def lineage_facts(record: dict[str, Any]) -> list[list[str]]:
    """What an auditor asks of a registered model, as label/value rows of the lineage record."""
    data, model = record.get("data") or {}, record.get("model") or {}
    pretrained = record.get("pretrained") or {}
    training = record.get("training") or {}
    rows = [
        ["version", format_tag(str(record.get("artifact")), str(record.get("version")))],
        ["registered at (UTC)", str(record.get("registered_at"))],
        ["code commit", str(record.get("code_commit"))],
        ["uncommitted changes", ", ".join(record.get("uncommitted_changes") or []) or "none"],
        ["data in neither git nor DVC", ", ".join(record.get("unversioned_inputs") or []) or "none"],
        ["data source", "; ".join(f"{k}: {v}" for k, v in (data.get("source") or {}).items())],
        ["splits (DVC md5)", _hash(data.get("splits"))],
        *[[f"tokenized {s} (DVC md5)", _hash(v)] for s, v in (data.get("tokenized") or {}).items()],
        ["model (DVC md5)", _hash(model)],
        ["base model", json.dumps(pretrained, sort_keys=True)[:400]],
        ["training", ", ".join(f"{k} {v}" for k, v in training.items() if not isinstance(v, dict | list))],
        *_adapter_rows(training),
        ["training parameters", json.dumps((record.get("resolved_params") or {}).get("train"))],
        ["search study", str((record.get("search") or {}).get("study_name") or "none")],
        ["packages", ", ".join(f"{k} {v}" for k, v in (record.get("packages") or {}).items())],
        ["python", str(record.get("python"))],
        ["Prefect flow run", str(record.get("prefect_flow_run_id") or "none (registered without the flow)")],
    ]
    return rows


def _adapter_rows(training: dict[str, Any]) -> list[list[str]]:
    """Trainable / total parameters and the adapter (LoRA's settings, merged into the model)."""
    counts = training.get("parameters") or {}
    rows = []
    if counts:
        rows.append(["trainable parameters", f"{counts.get('trainable', 0):,} of {counts.get('total', 0):,}"])
    a = training.get("adapter")
    if a:
        rows.append([
            "adapter",
            f"LoRA r {a.get('r')}, alpha {a.get('alpha')}, dropout {a.get('dropout')} on "
            f"{', '.join(map(str, a.get('target_modules') or []))}; merged into the model, alone in "
            "models/adapter",
        ])
    elif "adapter" in training:
        rows.append(["adapter", "none (the weights themselves trained)"])
    return rows


# --- dvc plots data ----------------------------------------------------------------------------


def plot_tables(evaluation: dict[str, Any], predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three test-plot tables for `evaluation`'s task; those of other tasks are empty."""
    task = evaluation.get("task")
    empty = {
        PLOT_CONFUSION: pd.DataFrame(columns=["actual", "predicted"]),
        PLOT_SCATTER: pd.DataFrame(columns=["actual", "predicted"]),
        PLOT_F1: pd.DataFrame(columns=["type", "f1"]),
    }
    if task == "sequence_classification":
        empty[PLOT_CONFUSION] = predictions[["actual", "predicted"]]
    elif task == "regression":
        empty[PLOT_SCATTER] = predictions[["actual", "predicted"]]
    elif task == "token_classification":
        per_type = evaluation.get("per_type") or {}
        empty[PLOT_F1] = pd.DataFrame(
            [{"type": k, "f1": round(float(v["f1"]), 6)} for k, v in per_type.items()], columns=["type", "f1"]
        )
    return empty


def write_plots(evaluation: dict[str, Any], predictions: pd.DataFrame, out: Path = catalog.PLOTS) -> None:
    with atomic_dir(out, owned=True) as tmp:  # a stage output: no marker, its hash unchanged
        for name, table in plot_tables(evaluation, predictions).items():
            table.to_csv(tmp / name, index=False)


def write_stage_outputs(evaluation: dict[str, Any], predictions: pd.DataFrame) -> None:
    """What the evaluate stage writes besides its scores: `dvc plots` data and reports/report.html."""
    write_plots(evaluation, predictions)
    write_text(catalog.REPORT, render(gather(worktree(Path(".")))))


# --- rendering ---------------------------------------------------------------------------------


def _figure(width: float = 5.5, height: float = 3.2) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def _img(fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp: reproducible bytes
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="chart" alt="{html(alt)}" src="data:image/png;base64,{data}">'


def _curves_chart(facts: dict[str, Any]) -> list[str]:
    charts = []
    loss = facts.get("train_loss") or {}
    if loss.get("step"):
        fig = _figure()
        ax = fig.add_subplot()
        ax.plot(loss["step"], loss["loss"], marker=".")
        ax.set(title="Training loss", xlabel="step", ylabel="loss")
        charts.append(_img(fig, "training loss"))
    curve = facts.get("eval_curve") or {}
    # The loss on its own axis, the task's metrics together (whatever train logged: eval_*).
    scores = [c for c in curve if is_eval_metric(c) and c != "eval_loss"]
    groups = [g for g in ([c for c in curve if c == "eval_loss"], scores) if g]
    if curve.get("step") and groups:
        fig = _figure(5.5, 2.4 * len(groups) + 0.4)
        axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
        for ax, names in zip(axes, groups, strict=True):
            for name in names:
                ax.plot(curve["step"], curve[name], marker="o", label=name.removeprefix("eval_"))
            ax.legend(fontsize="small")
            ax.set(ylabel="loss" if names == ["eval_loss"] else "score")
        axes[0].set_title("Validation curves")
        axes[-1].set_xlabel("step")
        charts.append(_img(fig, "validation curves"))
    return charts


def _plain(label: Any) -> str:
    """A label as matplotlib draws it literally: a `$` pair would start mathtext (and a label
    that is not valid TeX between them would fail the whole report)."""
    return str(label).replace("$", r"\$")


def _bars(scores: dict[str, dict[str, Any]], title: str) -> str:
    names = [_plain(n) for n in scores]
    fig = _figure(5.5, max(1.8, 0.35 * len(names) + 1))
    ax = fig.add_subplot()
    values = [float(v["f1"]) for v in scores.values()]
    ax.barh(names, values)
    ax.set(title=title, xlabel="F1", xlim=(0, 1))
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.text(min(v, 0.9), y, f" {v:.3f}", va="center")
    return _img(fig, title)


def _task_charts(facts: dict[str, Any]) -> list[str]:
    charts = []
    confusion = facts.get("confusion")
    if confusion:
        labels = [_plain(x) for x in confusion["labels"]]
        matrix = np.asarray(confusion["rows_true_cols_predicted"])
        size = max(3.5, 0.5 * len(labels) + 2)
        fig = _figure(size, size)
        ax = fig.add_subplot()
        ax.imshow(matrix, cmap="Blues")
        ax.set(title="Test confusion matrix", xlabel="predicted", ylabel="actual")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        high = matrix.max() / 2 if matrix.size else 0
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > high else "black")
        charts.append(_img(fig, "confusion matrix"))
    if facts.get("per_class"):
        charts.append(_bars(facts["per_class"], "Per-class F1 (test)"))
    if facts.get("per_type"):
        what = "entity" if facts.get("tag_scheme") not in (None, "none") else "tag"
        charts.append(_bars(facts["per_type"], f"Per-{what} F1 (test)"))
    scatter = facts.get("scatter")
    if scatter:
        fig = _figure(4.5, 4.5)
        ax = fig.add_subplot()
        ax.scatter(scatter["actual"], scatter["predicted"], s=10, alpha=0.6)
        both = scatter["actual"] + scatter["predicted"]
        lo, hi = min(both), max(both)
        ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
        ax.set(title="Predicted vs actual (test)", xlabel="actual", ylabel="predicted")
        charts.append(_img(fig, "predicted vs actual"))
    return charts


def _table(columns: list[str], rows: list[list[Any]], cls: str) -> str:
    head = "".join(f"<th>{html(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_section(facts: dict[str, Any]) -> str:
    checks = {c["metric"]: c for c in facts.get("thresholds") or []}
    rows = []
    for name, value in facts["metrics"].items():
        check = checks.get(name)
        bound = (f">= {check['min']}" if "min" in check else f"<= {check['max']}") if check else ""
        verdict = ("pass" if check["passed"] else "FAIL") if check else ""
        rows.append([name, _num(value), bound, verdict])
    rows += [
        [n, "not reported", f"{c.get('min', c.get('max'))}", "FAIL"]
        for n, c in checks.items()
        if n not in facts["metrics"]
    ]
    gate = {True: "passed every threshold", False: "missed a threshold", None: "unknown"}
    verdict = gate[facts.get("passed")]
    if not checks and facts.get("passed") is not None:
        verdict = "no thresholds set: every model passes"
    baseline = facts.get("baseline")
    against = (
        f"<p>Majority-class baseline on the test split: accuracy <b>{baseline['accuracy']:.4f}</b> "
        f"(every example labelled {html(repr(baseline['label']))}).</p>"
        if baseline
        else ""
    )
    return (
        f"<h2>Test metrics against thresholds</h2><p>Gate: <b>{verdict}</b> "
        "(params.yaml evaluate.thresholds).</p>"
        + against
        + _table(["metric", "value", "threshold", "verdict"], rows, "metrics")
    )


def _load_section(facts: dict[str, Any]) -> str:
    """What load changed in the user's rows (data/splits/manifest.json), and where labels came from."""
    manifest = facts.get("manifest")
    if not manifest or "changes" not in manifest:  # none, or written before load recorded changes
        return ""
    labels = manifest.get("labels") or {}
    names = labels.get("names") or []
    where = "declared in load.labels" if labels.get("from") == "load.labels" else "read from the train split"
    said = f"<p>Labels ({len(names)}, {where}): {html(', '.join(names[:50]))}</p>" if names else ""
    changes = manifest.get("changes") or []
    rows = [
        [
            c["split"],
            c["change"].replace("_", " "),
            c["rows"],
            "; ".join(describe_example(e, c.get("unit", "row")) for e in c.get("examples", [])),
        ]
        for c in changes
    ]
    body = (
        _table(["split", "change", "rows", "first rows"], rows, "changes")
        if rows
        else f"<p>None: every row read is kept (load.dedupe: {html(manifest.get('dedupe', 'all'))}).</p>"
    )
    return "<h2>What load changed in your rows</h2>" + said + body


def promotion_rows(decision: dict[str, Any]) -> str:
    """On which rows a promotion decision was made: `400 test rows (split md5 0123456789ab)`;
    decisions recorded before the split was say only the number of examples."""
    split = decision.get("test_split") or {}
    rows = split.get("rows", decision.get("examples"))
    where = f" (split md5 {str(split['md5'])[:12]})" if split.get("md5") else ""
    return f"{rows if rows is not None else '?'} test rows{where}"


def _promotion_section(facts: dict[str, Any]) -> str:
    if not facts.get("registered"):
        return (
            '<h2>Against the production version</h2><p class="note">Not part of the stage report: the '
            "comparison with the version in production is made at registration, and added to the "
            "version's report (lineage/&lt;name&gt;@&lt;version&gt;.html).</p>"
        )
    decision = facts.get("promotion")
    if not decision:
        return (
            "<h2>Against the production version</h2><p>No promotion decision was recorded for this version "
            "(registered without the flow's comparison).</p>"
        )
    champion, challenger = decision.get("champion"), decision["challenger"]
    promoted = str(decision["promote"]).lower()
    rows = [["this version", challenger["version"], _num(challenger["score"])]]
    if champion:
        rows.append(
            [
                f"in {decision['stage']} ({champion.get('scored', '')})",
                champion["version"],
                _num(champion["score"]),
            ]
        )
    text = f"<p><b>{html(decision.get('reason', ''))}</b></p>"
    if champion:
        text += (
            f"<p>Difference {decision['improvement']:+.4f} in {html(decision['metric'])}, "
            f"{decision['confidence']:.0%} interval [{decision['low']:+.4f}, {decision['high']:+.4f}] "
            f"(paired bootstrap, {html(decision['resamples'])} resamples of {html(decision['examples'])} "
            f"test examples, seed {html(decision['seed'])}); min_delta {html(decision['min_delta'])}, "
            f"require_significant {html(str(decision['require_significant']).lower())}; "
            f"promoted: {html(promoted)}.</p>"
            f"<p>Both scored on the same rows: {html(promotion_rows(decision))}.</p>"
        )
        guards = decision.get("guards") or []
        if guards:
            text += _table(
                ["guard", "this version", "in " + str(decision["stage"]), "worse by", "limit", "verdict"],
                [
                    [g["metric"], _num(g["challenger"]), _num(g["champion"]), _num(g["worse_by"]),
                     g["limit"], "pass" if g["passed"] else "blocks"]
                    for g in guards
                ],
                "guards",
            )  # fmt: skip
    else:
        text += f"<p>No version held {html(decision['stage'])}; promoted: {html(promoted)}.</p>"
    return (
        "<h2>Against the production version</h2>"
        + text
        + _table(["", "version", decision["metric"]], rows, "promotion")
    )


def _tokens_cut(t: dict[str, Any]) -> str:
    """Tokens past max_length, of all tokens (absent from reports older than the figure)."""
    return f"{t['tokens_cut']} of {t['tokens']} ({t['tokens_share']:.1%})" if "tokens" in t else ""


def _drift_section(facts: dict[str, Any]) -> str:
    """The flow's drift report (recorded at registration): this run's data against production's."""
    found = facts.get("drift")
    if not facts.get("registered"):
        return ""
    if not found:
        return "<h2>Data drift</h2><p>No drift report was recorded (registered without the flow).</p>"
    text = f"<h2>Data drift</h2><p><b>{html(found.get('headline', ''))}</b></p>"
    if found.get("table"):
        text += _table(["measure", "production", "this run", "limit"], found["table"], "drift")
    return text


def _validation_section(facts: dict[str, Any]) -> str:
    validation = facts.get("validation")
    if not validation:
        return "<h2>Data validation</h2><p>No validation report found.</p>"
    rows = []
    for split, data in (validation.get("splits") or {}).items():
        counts = data.get("class_counts") or data.get("tag_counts") or data.get("target") or {}
        checks = data.get("checks")
        passed = f"{sum(c['success'] for c in checks)}/{len(checks)}" if checks else ""
        shown = ", ".join(f"{k}: {_num(v)}" for k, v in list(counts.items())[:12])
        rows.append([split, data.get("rows", ""), shown, passed])
    truncation = validation.get("truncation") or {}
    cut_rows = [
        [split, t["examples"], t["truncated"], f"{t['share']:.1%}", _tokens_cut(t)]
        + [t["tokens_median"], t["tokens_max"]]
        for split, t in truncation.items()
        if isinstance(t, dict)
    ]
    ok = "passed" if validation.get("success") else "FAILED"
    repaired = facts.get("tags_repaired") or {}
    repairs = (
        f"<p>IOB2 tags repaired by load (I-X opening a chunk made B-X, load.conll.tag_repair: fix): "
        f"{html(', '.join(f'{s} {n}' for s, n in repaired.items()))}.</p>"
        if sum(repaired.values())
        else ""
    )
    warnings = "".join(f"<p>Warning: {html(w)}</p>" for w in validation.get("warnings") or [])
    incoming = facts.get("incoming") or {}
    added = (
        "<p>Rows added by <code>tunepipe ingest</code> to the source's train rows (load): "
        + ", ".join(f"{html(path)}: {_num(info.get('rows', ''))}" for path, info in incoming.items())
        + ".</p>"
        if incoming
        else ""
    )
    return (
        f"<h2>Data validation</h2><p>Great Expectations suites: <b>{ok}</b>.</p>"
        + added
        + repairs
        + warnings
        + _table(["split", "rows", "labels / target", "checks passed"], rows, "validation")
        + f"<h2>Truncation</h2><p>Examples longer than {html(truncation.get('max_length', '?'))} tokens "
        "are cut (tokenize.max_length).</p>"
        + _table(
            ["split", "examples", "truncated", "share", "tokens cut", "median tokens", "max tokens"],
            cut_rows,
            "truncation",
        )
    )


def _mistakes_section(facts: dict[str, Any]) -> str:
    found = facts.get("mistakes")
    if not found:
        return "<h2>Most confident mistakes</h2><p>No test predictions found.</p>"
    if not found["rows"]:
        return "<h2>Most confident mistakes</h2><p>The model made no mistake on the test split.</p>"
    return (
        f"<h2>Most confident mistakes</h2><p>{len(found['rows'])} test examples: "
        f"{html(found['order'])}.</p>" + _table(found["columns"], found["rows"], "mistakes")
    )


def _lineage_section(facts: dict[str, Any]) -> str:
    if facts.get("lineage") is None:
        return (
            '<h2>Lineage</h2><p class="note">Added at registration: commits, data and model hashes, '
            "packages and the flow run are known once the version is registered.</p>"
        )
    return "<h2>Lineage</h2>" + _table(["fact", "value"], facts["lineage"], "lineage")


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td { max-width: 60em; overflow-wrap: anywhere; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.chart { max-width: 100%; height: auto; flex: none; }
.note { color: #555; font-style: italic; }
"""


def render(facts: dict[str, Any]) -> str:
    """The page, as a pure function of `gather`'s facts; charts are embedded PNGs."""
    charts = _curves_chart(facts) + _task_charts(facts)
    title = f"Run report: {facts['title']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html(title)}</h1>",
        f"<p>Task: <b>{html(facts.get('task') or 'unknown')}</b>; test examples: "
        f"{html(facts['metrics'].get('examples', '?'))}.</p>",
        _metrics_section(facts),
        _promotion_section(facts),
        _drift_section(facts),
        '<h2>Curves and test charts</h2><div class="charts">' + "".join(charts) + "</div>",
        _load_section(facts),
        _validation_section(facts),
        _mistakes_section(facts),
        _lineage_section(facts),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
