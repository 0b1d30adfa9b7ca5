"""Named task presets (`load.preset: glue/cola`): the columns, labels, splits and metrics of a
well-known dataset, so a user switches task by editing one line of params.yaml.

A preset only fills what params.yaml leaves out (or sets to null): anything written there wins,
so the same preset also serves a local copy of the dataset with other split names or paths.
GLUE's test labels are hidden (-1), so its labelled validation split serves as the test split
and a validation split is carved from train.
"""

from __future__ import annotations

from typing import Any

from tunepipe.errors import PipelineError

GLUE_SOURCE = "hub:nyu-mll/glue"

# name: (hub config, text column, pair column, label names or None for regression,
#        test split in the hub dataset, extra metrics, metric that picks the best checkpoint)
_GLUE: dict[str, tuple[str, str, str | None, list[str] | None, str, list[str], str]] = {
    "cola": ("cola", "sentence", None, ["unacceptable", "acceptable"], "validation",
             ["matthews_correlation"], "matthews_correlation"),
    "sst2": ("sst2", "sentence", None, ["negative", "positive"], "validation", [], "accuracy"),
    "mrpc": ("mrpc", "sentence1", "sentence2", ["not_equivalent", "equivalent"], "validation",
             ["f1"], "f1"),
    "qqp": ("qqp", "question1", "question2", ["not_duplicate", "duplicate"], "validation",
            ["f1"], "f1"),
    "stsb": ("stsb", "sentence1", "sentence2", None, "validation", [], "pearson"),
    "mnli": ("mnli", "premise", "hypothesis", ["entailment", "neutral", "contradiction"],
             "validation_matched", [], "accuracy"),
    "qnli": ("qnli", "question", "sentence", ["entailment", "not_entailment"], "validation", [],
             "accuracy"),
    "rte": ("rte", "sentence1", "sentence2", ["entailment", "not_entailment"], "validation", [],
            "accuracy"),
    "wnli": ("wnli", "sentence1", "sentence2", ["not_entailment", "entailment"], "validation", [],
             "accuracy"),
}  # fmt: skip


def _glue(name: str) -> dict[str, Any]:
    config, text, pair, labels, test_split, metrics, best = _GLUE[name]
    regression = labels is None
    return {
        "task": "regression" if regression else "sequence_classification",
        "load": {
            "source": GLUE_SOURCE,
            "hub_config": config,
            "columns": {"text": text, "text_pair": pair, "label": "label"},
            "labels": [] if regression else labels,
            "split": {"from_source": {"train": "train", "test": test_split}},
        },
        # STS-B similarity scores run from 0 to 5.
        "validate": {"target_range": [0.0, 5.0]} if regression else {},
        "train": {"metric_for_best_model": best},
        "evaluate": {"metrics": metrics},
    }


PRESETS: dict[str, dict[str, Any]] = {f"glue/{name}": _glue(name) for name in _GLUE}


def names() -> list[str]:
    return sorted(PRESETS)


# Scored with a trained model instead of a preset of its own (it would train glue/mnli again).
SCORED_WITH_EVALUATE = {
    "glue/mnli-mm": "train with load.preset: glue/mnli, then score its mismatched validation set with "
    "`tunepipe evaluate --model <version or models/model> hub:nyu-mll/glue --split validation_mismatched`",
}


def get(name: str) -> dict[str, Any]:
    if name in SCORED_WITH_EVALUATE:
        raise PipelineError(
            f"params.yaml: load.preset {name!r} is not a training preset: {SCORED_WITH_EVALUATE[name]}"
        )
    if name not in PRESETS:
        raise PipelineError(
            f"params.yaml: load.preset {name!r} is unknown; choose one of {', '.join(names())}"
        )
    return PRESETS[name]


def apply(data: dict[str, Any]) -> dict[str, Any]:
    """params.yaml contents with the preset's values filled in where the file has none."""
    name = (data.get("load") or {}).get("preset")
    if not name:
        return data
    preset = get(str(name))
    task = data.get("task")
    if task is not None and task != preset["task"]:
        raise PipelineError(
            f"params.yaml: load.preset {name} is a {preset['task']} task but task is {task!r}; "
            f"set task: {preset['task']} (or remove the line)"
        )
    return _fill(data, preset)


def _fill(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in defaults.items():
        mine = out.get(key)
        if isinstance(value, dict) and value and (mine is None or isinstance(mine, dict)):
            out[key] = _fill(mine or {}, value)
        elif mine is None or mine == [] or mine == {}:
            out[key] = value
    return out
