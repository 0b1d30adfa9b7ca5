"""Model cards in Hugging Face's format (YAML metadata with `model-index`, then Markdown), written
by the pipeline from what it recorded, never by hand.

One renderer, three moments, each card saying only what is known by then:
- train writes models/model/README.md: base model, data, hyperparameters, how training went. It is
  inside the model's DVC hash, so it holds nothing that differs between identical runs (no dates,
  no timings) and nothing train does not depend on (test split, evaluation, version).
- evaluate writes reports/model_card.md: that card plus test metrics, thresholds, per-class scores.
- `tunepipe fetch` writes README.md into the fetched folder: plus the registered version's lineage
  (version_card), rendered from the lineage record, which keeps the facts of evaluate's card.

The facts each card was rendered from are kept in its metadata (`tunepipe:`), so a later card
builds on an earlier one without re-reading the stage's inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunepipe import catalog
from tunepipe import markup as md
from tunepipe.dvcstore import dvc_md5
from tunepipe.errors import PipelineError
from tunepipe.io import read_json
from tunepipe.metrics import EXTRA_METRICS, format_threshold, metric_names
from tunepipe.params import Params

README = "README.md"
FACTS_KEY = "tunepipe"  # the card's metadata key holding the facts it was rendered from
PIPELINE_TAGS = {
    "sequence_classification": "text-classification",
    "regression": "text-classification",  # a one-output head; the hub files it under this task
    "token_classification": "token-classification",
}
# Hyperparameters shown in the card: how the processes meet (launch settings) says nothing of the model.
LAUNCH_FIELDS = ("master_addr", "master_port", "rdzv_endpoint", "ddp_timeout")


# --- facts ---------------------------------------------------------------------------------------


def at_limit_share(ds: Any, max_length: int) -> float:
    """Share of examples whose tokens fill the whole window: cut there (or exactly that long)."""
    if len(ds) == 0:
        return 0.0
    return round(sum(len(ids) >= max_length for ids in ds["input_ids"]) / len(ds), 4)


def split_facts(ds: Any, path: Path, max_length: int) -> dict[str, Any]:
    return {"rows": len(ds), "md5": dvc_md5(path), "at_length_limit": at_limit_share(ds, max_length)}


def base_license(pretrained: dict[str, Any]) -> str | None:
    """The base model's license where data/pretrained.json recorded it (from the base's card)."""
    return pretrained.get("license")


def train_facts(
    p: Params, info: dict[str, Any], splits: dict[str, dict[str, Any]], report: dict[str, Any]
) -> dict[str, Any]:
    """What the train stage knows: everything here comes from its deps (dvc.yaml), so the card it
    writes changes exactly when the model may."""
    hyper = {k: v for k, v in p.train.model_dump().items() if k not in LAUNCH_FIELDS}
    pretrained = read_json(catalog.PRETRAINED) if catalog.PRETRAINED.is_file() else {}
    return {
        "task": p.task,
        "labels": list(info["labels"]),
        "tag_scheme": info.get("tag_scheme"),
        "max_length": info.get("max_length"),
        "license": p.register.license,
        "base_model": pretrained,
        "data": {
            "preset": p.load.preset,
            "source": p.load.source,
            "split": p.load.split.model_dump(),
            "splits": splits,
        },
        "hyperparameters": hyper,
        "training": report,
    }


def read_facts(card_path: Path) -> dict[str, Any]:
    """The facts an earlier card was rendered from (its `tunepipe:` metadata)."""
    from huggingface_hub import ModelCard

    if not card_path.is_file():
        raise PipelineError(f"{card_path}: not found; run the train stage, which writes it")
    facts = ModelCard.load(card_path).data.to_dict().get(FACTS_KEY)
    if not isinstance(facts, dict):
        raise PipelineError(f"{card_path}: no `{FACTS_KEY}:` metadata; run the train stage again")
    return facts


def evaluation_facts(
    facts: dict[str, Any], evaluation: dict[str, Any], test: dict[str, Any], validation: dict[str, Any]
) -> dict[str, Any]:
    """The train card's facts with the test split, the evaluation and validate's summary added."""
    data = facts["data"] | {"splits": facts["data"]["splits"] | {"test": test}}
    return facts | {"data": data, "evaluation": evaluation, "validation": validation_summary(validation)}


def validation_summary(validation: dict[str, Any]) -> dict[str, Any]:
    keep = ("rows", "class_counts", "tag_counts", "target")
    return {
        "success": validation.get("success"),
        "splits": {s: {k: v for k, v in d.items() if k in keep} for s, d in validation["splits"].items()},
        "truncation": validation.get("truncation"),
    }


# --- rendering -----------------------------------------------------------------------------------


def _sources(source: Any) -> list[str]:
    values = source.values() if isinstance(source, dict) else [source]
    return list(dict.fromkeys(str(v).removeprefix("hub:") for v in values if v))


def _base(pretrained: dict[str, Any]) -> tuple[str | None, str]:
    """(the hub id for `base_model`, or None; a sentence describing the base model)."""
    if pretrained.get("source") == "hub":
        hub = pretrained["hub"]
        revision = hub.get("revision") or "main (not pinned: the hub may have changed it since)"
        return hub["id"], f"{md.code(hub['id'])} from the Hugging Face hub at revision {md.code(revision)}."
    files = {**pretrained.get("tokenizer", {}), **pretrained.get("model", {})}
    if not files:
        return None, "not recorded (no data/pretrained.json when this model was trained)"
    listed = "\n".join(f"  - {md.code(name)}: sha256 {md.code(sha)}" for name, sha in files.items())
    return None, (
        "local files (params.yaml `model.name`), identified by content rather than by path "
        f"(data/pretrained.json):\n{listed}"
    )


def _metadata(
    facts: dict[str, Any], name: str | None, evaluation: dict[str, Any] | None, results: list[Any]
) -> Any:
    from huggingface_hub import ModelCardData

    task, scheme = facts["task"], facts.get("tag_scheme") or "none"
    base_id, _ = _base(facts["base_model"])
    reported = [k for k, v in evaluation["metrics"].items() if isinstance(v, float)] if evaluation else []
    return ModelCardData(
        model_name=name,
        base_model=base_id,
        license=facts.get("license"),
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS[task],
        tags=["tunepipe", task.replace("_", "-"), "dvc"],
        datasets=_sources(facts["data"]["source"]) or None,
        # Before evaluation: what the task reports (the extras only when evaluate.metrics asks)
        metrics=reported or [m for m in metric_names(task, scheme) if m not in EXTRA_METRICS],
        eval_results=results or None,
        **{FACTS_KEY: facts},
    )


def _eval_results(facts: dict[str, Any], evaluation: dict[str, Any]) -> list[Any]:
    from huggingface_hub import EvalResult

    datasets = _sources(facts["data"]["source"])
    return [
        EvalResult(
            task_type=PIPELINE_TAGS[facts["task"]],
            dataset_type=datasets[0] if datasets else "unknown",
            dataset_name=facts["data"].get("preset") or (datasets[0] if datasets else "unknown"),
            dataset_split="test",
            metric_type=metric,
            metric_name=metric,
            metric_value=value,
        )
        for metric, value in evaluation["metrics"].items()
        if isinstance(value, float)
    ]


def _model_section(facts: dict[str, Any]) -> str:
    _, base = _base(facts["base_model"])
    license_ = facts.get("license")
    base_license_ = base_license(facts["base_model"])
    labels = facts["labels"]
    lines = [
        f"- Task: {md.text(facts['task'].replace('_', ' '))}"
        + (f" (tag scheme {md.text(facts['tag_scheme'])})" if facts.get("tag_scheme") else ""),
        "- Output: one number per text (a regression head)"
        if facts["task"] == "regression"
        else f"- Labels ({len(labels)}, in id order): " + ", ".join(md.code(x) for x in labels),
        f"- Base model: {base}",
        f"- License: {md.code(license_)}"
        if license_
        else "- License: not set (params.yaml `register.license` is null); decide one before sharing",
        f"- Base model's license: {md.code(base_license_)}"
        if base_license_
        else "- Base model's license: not recorded (its card gives none, or it comes from the hub)",
        "- Library: transformers (`save_pretrained` folder: config, weights, tokenizer)",
    ]
    return "## Model details\n\n" + "\n".join(lines)


def _data_section(facts: dict[str, Any]) -> str:
    data = facts["data"]
    split = data["split"]
    source = data["source"]
    if isinstance(source, dict):
        shown = ", ".join(f"{md.text(k)}: {md.code(v)}" for k, v in source.items())
    else:
        shown = md.code(source)
    # A mapping of files names each split it supplies; one source may hold splits of its own.
    supplied = (set(source) if isinstance(source, dict) else set()) | set(split.get("from_source") or {})
    given = sorted(supplied - {"train"})
    carved = [f"{s} {split[s]:.0%}" for s in ("validation", "test") if s not in supplied]
    group_by = split.get("group_by")
    grouped = f", rows sharing {md.code(group_by)} kept in one split" if group_by else ""
    unless = "" if isinstance(source, dict) else " unless the source holds that split"
    parts = [f"{' and '.join(carved)} carved from train{unless} (seed {split['seed']}){grouped}"]
    supplies = [f"{md.text(', '.join(given))} as the source supplies"] if given else []
    parts = (parts if carved else []) + supplies
    if split.get("from_source"):
        parts.append(f"split names in the source: {md.text(json.dumps(split['from_source']))}")
    rule = "; ".join(parts)
    rows = [
        [s, d["rows"], md.code(d["md5"]), d["at_length_limit"]]
        for s, d in data["splits"].items()
    ]
    loaded = data.get("as_loaded")
    parts = [
        "## Training data",
        f"- Source: {shown}" + (f" (preset {md.code(data['preset'])})" if data.get("preset") else ""),
        f"- Split rule: {rule}",
        *([f"- As loaded (data/splits/manifest.json): {md.text(json.dumps(loaded))}"] if loaded else []),
        f"- Rows per split, their tokenized data's hash (DVC md5, as dvc.lock records it) and the "
        f"share of examples filling the {md.text(facts['max_length'])}-token window (cut there):",
        "",
        md.table(["split", "rows", "hash", "at length limit"], rows),
    ]
    if "test" not in data["splits"]:
        parts.append(
            "\nThe test split is not read by training; the evaluate stage adds it "
            "(reports/model_card.md)."
        )
    validation = facts.get("validation")
    if validation and validation.get("truncation"):
        trunc = validation["truncation"]
        cut = [
            [s, t["examples"], t["truncated"], t["share"]] for s, t in trunc.items() if isinstance(t, dict)
        ]
        parts += ["", f"Texts longer than {md.text(trunc['max_length'])} tokens (validate stage):", "",
                  md.table(["split", "examples", "truncated", "share"], cut)]
    return "\n".join(parts[:1]) + "\n\n" + "\n".join(parts[1:])


def _procedure_section(facts: dict[str, Any]) -> str:
    t, r = facts["hyperparameters"], facts["training"]
    ((metric, best),) = r["best_metric"].items()
    device = r["device"]
    batch = r["batch"]
    lines = [
        f"- Device: {device['device']}, precision {device['precision']}; {batch['processes']} process(es), "
        f"global batch {batch['global']} ({batch['per_device']} per device x {batch['processes']} x "
        f"{batch['gradient_accumulation_steps']} accumulation steps)",
        f"- Parameters: {r['parameters']['trainable']:,} of {r['parameters']['total']:,} trainable "
        f"(freeze: {md.text(t['freeze'])})",
        *_adapter_lines(r),
        f"- Training examples: {r['train_examples']}",
        *_sampled_validation(r),
        f"- Epochs run: {r['epochs_run']} of {t['epochs']} ({r['global_step']} of {r['max_steps']} steps)",
        f"- Early stopping: patience {t['early_stopping_patience']} evaluations, minimum improvement "
        f"{t['early_stopping_threshold']}; "
        + ("stopped early" if r["stopped_early"] else "ran to the end"),
        f"- Kept checkpoint: {md.text(r['best_checkpoint'])}, validation {md.text(metric)} {md.text(best)}",
        "- Class weights: " + (md.text(json.dumps(r["class_weights"])) if r.get("class_weights") else "none"),
    ]
    hyper = md.table(["hyperparameter", "value"], [[k, json.dumps(v)] for k, v in t.items()])
    return "## Training procedure\n\n" + "\n".join(lines) + "\n\nparams.yaml `train:` as used:\n\n" + hyper


def _sampled_validation(r: dict[str, Any]) -> list[str]:
    """The in-training evaluations' sample, where train.eval_max_samples cut the validation split."""
    v = r.get("validation_examples")
    if not v or v["evaluated"] >= v["of"]:
        return []
    return [
        f"- Checkpoints chosen on a fixed sample of {v['evaluated']:,} of the {v['of']:,} validation "
        "rows (train.eval_max_samples)"
    ]


def _adapter_lines(r: dict[str, Any]) -> list[str]:
    """LoRA and gradient checkpointing, where the run used them (earlier records have neither)."""
    lines = []
    a = r.get("adapter")
    if a:
        lines.append(
            f"- Adapter: LoRA r {md.text(a['r'])}, alpha {md.text(a['alpha'])}, dropout "
            f"{md.text(a['dropout'])} on {md.text(', '.join(a['target_modules']))}, with the head; "
            "merged into these weights (no peft needed to load them), the adapter alone in models/adapter"
        )
    if r.get("gradient_checkpointing"):
        lines.append("- Gradient checkpointing: on")
    return lines


def _threshold(check: dict[str, Any]) -> md.Markdown:
    """`>= 0.8` as written, the bound escaped (a lineage record read back may hold anything)."""
    sign, bound = format_threshold(check).split(" ", 1)
    return md.raw(f"{sign} {md.text(bound)}")


def _evaluation_section(facts: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    head = "## Evaluation"
    if evaluation is None:
        return (
            f"{head}\n\nNot evaluated yet. The evaluate stage scores this model on the test split and "
            "writes the numbers to reports/metrics.json and reports/evaluation.json, and this card with "
            "them to reports/model_card.md; `tunepipe fetch <version>` writes the full card of a "
            "registered version."
        )
    metrics = evaluation["metrics"]
    parts = [
        head,
        f"Test split, {md.text(metrics.get('examples'))} examples"
        + (f" ({md.text(metrics['words'])} words)" if "words" in metrics else "")
        + ":",
        md.table(["metric", "value"], [[k, v] for k, v in metrics.items() if isinstance(v, float)]),
    ]
    checks = evaluation.get("thresholds") or []
    verdict = "passed" if evaluation.get("passed", all(c["passed"] for c in checks)) else "FAILED"
    parts.append(
        f"Thresholds (params.yaml `evaluate.thresholds`): {verdict}\n\n"
        + md.table(
            ["metric", "threshold", "value", "passed"],
            [[c["metric"], _threshold(c), c["value"], c["passed"]] for c in checks],
        )
        if checks
        else "Thresholds: none set (params.yaml `evaluate.thresholds`)"
    )
    per = evaluation.get("per_class") or evaluation.get("per_type")
    if per:
        entities = facts.get("tag_scheme") not in (None, "none")
        kind = "class" if "per_class" in evaluation else "entity type" if entities else "tag"
        columns = list(next(iter(per.values())))
        rows = [[k, *v.values()] for k, v in per.items()]
        parts.append(f"Per {kind}:\n\n" + md.table([kind, *columns], rows))
    matrix = evaluation.get("confusion_matrix")
    if matrix:
        labels = matrix["labels"]
        cells = matrix["rows_true_cols_predicted"]
        rows = [[md.raw(f"true {md.text(a)}"), *row] for a, row in zip(labels, cells, strict=True)]
        header = ["", *(md.raw(f"predicted {md.text(b)}") for b in labels)]
        parts.append("Confusion matrix:\n\n" + md.table(header, rows))
    elif facts["task"] == "regression":
        parts.append("Per-class scores do not apply to regression: the metrics above cover every example.")
    return "\n\n".join(parts)


def _use_section(facts: dict[str, Any]) -> str:
    task = facts["task"]
    limit = facts["max_length"]
    lines = [
        f"- Intended use: {task.replace('_', ' ')} of text like the training source, predicting one of "
        f"the labels above" if task != "regression" else
        "- Intended use: scoring text like the training source on the scale of its target",
        f"- Inputs are cut at {limit} tokens (the saved tokenizer's `model_max_length`): text beyond that "
        "is not seen. The share of each split that reaches the limit is under Training data.",
        "- Out of scope: labels outside the set above, languages and domains not in the source, and any "
        "decision without a person reviewing it where errors carry weight.",
        "- The test metrics describe the test split only; they bound nothing on data drawn differently.",
    ]
    if facts.get("validation", {}).get("splits"):
        splits = facts["validation"]["splits"]
        counts = {s: d.get("class_counts") or d.get("tag_counts") for s, d in splits.items()}
        if any(counts.values()):
            lines.append(f"- Label counts per split (validate stage): {md.text(json.dumps(counts))}")
    return "## Intended use and limitations\n\n" + "\n".join(lines)


def _lineage_section(lineage: dict[str, Any] | None) -> str:
    head = "## Lineage"
    if lineage is None:
        return (
            f"{head}\n\nNot registered yet: `tunepipe register` (or the flow) gives this model a "
            "version and a commit pinning its data and model hashes; `tunepipe fetch <version>` writes "
            "this card with them, and `tunepipe lineage <version>` shows the full record."
        )
    rows = [[k, md.code(v) if v is not None else "none"] for k, v in lineage.items()]
    return f"{head}\n\n" + md.table(["", "value"], rows)


def render(
    facts: dict[str, Any],
    name: str | None = None,
    evaluation: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
) -> str:
    """The card's text: metadata (with `model-index` results when evaluated) and the sections."""
    from huggingface_hub import ModelCard

    results = _eval_results(facts, evaluation) if evaluation else []
    data = _metadata(facts | ({"evaluation": evaluation} if evaluation else {}), name, evaluation, results)
    title = md.text(name or "Model card") + (f" {md.text(lineage['version'])}" if lineage else "")
    task = md.text(facts["task"].replace("_", " "))
    summary = (
        f"A {task} model fine-tuned by the tunepipe pipeline (DVC stages, "
        "GTO registry). Every number below was written by the pipeline from its records."
    )
    sections = [
        f"# {title}",
        summary,
        _model_section(facts),
        _data_section(facts),
        _procedure_section(facts),
        _evaluation_section(facts, evaluation),
        _use_section(facts),
        _lineage_section(lineage),
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
    return str(card)


# --- the three cards -----------------------------------------------------------------------------


def training_card(
    p: Params, info: dict[str, Any], splits: dict[str, dict[str, Any]], report: dict[str, Any]
) -> str:
    """models/model/README.md (train stage): nothing in it differs between identical runs."""
    return render(train_facts(p, info, splits, report))


def write_evaluated_card(p: Params, evaluation: dict[str, Any]) -> Path:
    """reports/model_card.md (evaluate stage): the model's own card plus the test evaluation."""
    from datasets import load_from_disk

    from tunepipe.io import write_text

    facts = read_facts(catalog.MODEL / README)
    test_dir = catalog.tokenized_split("test")
    test = split_facts(load_from_disk(str(test_dir)), test_dir, facts["max_length"])
    full = evaluation_facts(facts, evaluation, test, read_json(catalog.VALIDATION_REPORT))
    write_text(catalog.MODEL_CARD, render(full, p.register.name, evaluation))
    return catalog.MODEL_CARD


Reader = Callable[[str], bytes | None]  # a version's file by repo path (registry.tag_reader)


def _text(read: Reader, path: str) -> str | None:
    data = read(path)
    return data.decode() if data is not None else None


def version_card(record: dict[str, Any], name: str, tag: str, read: Reader) -> str:
    """The complete card of a registered version (what `tunepipe fetch` writes as README.md) from
    its lineage record (with `registered_commit`); `read` gives the version's files (registry.tag_reader).

    From the version's lineage record alone (git), which keeps the facts of the card evaluate
    wrote: the same text in every clone, with or without the DVC cache. A version registered
    before cards existed is rendered from its reports in the local DVC cache where they are, else
    from what its record holds."""
    facts = record.get("model_card")
    evaluation = facts.get("evaluation") if isinstance(facts, dict) else None
    if not isinstance(facts, dict):
        facts, evaluation = _cached_facts(record, read)
    evaluation = evaluation or {"metrics": record["metrics"], "thresholds": record.get("thresholds") or []}
    if not facts.get("validation") and record.get("validation"):
        facts = facts | {"validation": record["validation"]}
    # What load actually did per split (its manifest), which the lineage record keeps.
    facts = facts | {"data": facts["data"] | {"as_loaded": (record.get("data") or {}).get("source")}}
    promotion = record.get("promotion")
    lineage = {
        "version": record["version"],
        "tag": tag,
        "registered commit": record["registered_commit"],
        "code commit": record.get("code_commit"),
        "registered at": record.get("registered_at"),
        "model hash (DVC md5 of models/model as trained)": record["model"]["md5"],
        "uncommitted changes at registration": ", ".join(record.get("uncommitted_changes") or []) or None,
        "data in neither git nor DVC at registration": ", ".join(record.get("unversioned_inputs") or [])
        or None,
        "Prefect flow run": record.get("prefect_flow_run_id"),
        "promotion at registration": (
            f"{'promoted' if promotion['promote'] else 'not promoted'} to {promotion['stage']}: "
            f"{promotion['reason']}"
            if promotion
            else None
        ),
    }
    return render(facts, name, evaluation, lineage)


def _cached_facts(record: dict[str, Any], read: Reader) -> tuple[dict[str, Any], Any]:
    """(facts, evaluation) of a version whose record holds no card: from the card evaluate wrote or
    the model's own (local DVC cache), else from the record; evaluation.json where cached."""
    from huggingface_hub import ModelCard

    facts: Any = None
    for text in (
        _text(read, str(catalog.MODEL_CARD)),
        _text(read, f"{catalog.MODEL.as_posix()}/{README}"),
    ):
        if text and facts is None:
            facts = (ModelCard(text).data.to_dict() or {}).get(FACTS_KEY)
    if not isinstance(facts, dict):
        facts = facts_from_lineage(record, read)
    evaluation_text = _text(read, str(catalog.EVALUATION))
    return facts, json.loads(evaluation_text) if evaluation_text else facts.get("evaluation")


def recorded_facts(root: Path) -> dict[str, Any] | None:
    """The facts of reports/model_card.md, for the lineage record; None when evaluate wrote none
    (or it lost its metadata): the fetched card then comes from the DVC cache or the record."""
    try:
        return read_facts(Path(root) / catalog.MODEL_CARD)
    except PipelineError:
        return None


def facts_from_lineage(record: dict[str, Any], read: Reader) -> dict[str, Any]:
    """Facts for a version whose model folder has no card (registered before cards existed)."""
    p = record["resolved_params"]
    info_text = _text(read, catalog.tokenized_info().as_posix())
    info = json.loads(info_text) if info_text else {}
    tokenized = (record.get("data") or {}).get("tokenized") or {}
    rows = {s: d.get("rows") for s, d in (record.get("validation") or {}).get("splits", {}).items()}
    train = {k: v for k, v in p["train"].items() if k not in LAUNCH_FIELDS}
    return {
        "task": p["task"],
        "labels": info.get("labels") or p["load"]["labels"],
        "tag_scheme": info.get("tag_scheme"),
        "max_length": info.get("max_length") or p["tokenize"]["max_length"],
        "license": p["register"].get("license"),
        "base_model": record.get("pretrained") or {},
        "data": {
            "preset": p["load"]["preset"],
            "source": p["load"]["source"],
            "split": p["load"]["split"],
            "splits": {
                s: {"rows": rows.get(s), "md5": (tokenized.get(s) or {}).get("md5"), "at_length_limit": None}
                for s in catalog.SPLIT_NAMES
            },
        },
        "hyperparameters": train,
        "training": record["training"],
    }
