"""Every params.yaml value is checked when params are read: one row per bad value, with the part
of the message that names the field and says what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from tunepipe import params, sources
from tunepipe.errors import PipelineError
from tunepipe.params import Threshold

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent

# (params.yaml fragment, fragment of the error message)
BAD = [
    ("task: summarisation", "task: expected one of sequence_classification, regression"),
    ("train: {device: gpu}", "train.device: expected one of auto, cpu, cuda, got 'gpu'"),
    ("train: {precision: fp8}", "train.precision: expected one of auto, fp32, bf16, fp16, got 'fp8'"),
    ("train: {freeze: all}", "train.freeze: expected one of none, head_only, embeddings"),
    ("train: {learning_rate: fast}", "train.learning_rate: expected a number, got 'fast'"),
    ("train: {learning_rate: .nan}", "train.learning_rate: expected a finite number, got nan"),
    ("train: {learning_rate: .inf}", "train.learning_rate: expected a finite number, got inf"),
    ("train: {learning_rate: inf}", "train.learning_rate: expected a finite number, got 'inf'"),
    ("train: {weight_decay: .inf}", "train.weight_decay: expected a finite number, got inf"),
    ("train: {warmup_ratio: -.inf}", "train.warmup_ratio: expected a finite number, got -inf"),
    ("train: {epochs: .inf}", "train.epochs: expected a finite number, got inf"),
    ("train: {early_stopping_threshold: .nan}", "train.early_stopping_threshold: expected a finite number"),
    ("validate: {target_range: [0, .inf]}", "validate.target_range[1]: expected a finite number, got inf"),
    ("validate: {max_truncated_share: .nan}", "validate.max_truncated_share: expected a finite number"),
    ("promote: {min_delta: .inf}", "promote.min_delta: expected a finite number, got inf"),
    ("promote: {confidence: .nan}", "promote.confidence: expected a finite number, got nan"),
    ("train: {warmup_ratio: 1.0}", "train.warmup_ratio: expected at least 0 and below 1, got 1.0"),
    ("train: {metric_for_best_model: rmse}", "train.metric_for_best_model: 'rmse' is not reported for task"),
    (
        "task: token_classification\nload: {tag_scheme: none}\ntrain: {metric_for_best_model: f1}",
        "train.metric_for_best_model: 'f1' is not reported for task token_classification",
    ),
    ("train: {processes: 0}", "train.processes: expected a whole number of 1 or more, or auto, got 0"),
    ("train: {processes: all}", "train.processes: expected a whole number of 1 or more, or auto, got 'all'"),
    ("train: {nodes: 0}", "train.nodes: expected 1 or more, got 0"),
    ("train: {gradient_accumulation_steps: 0}", "train.gradient_accumulation_steps: expected 1 or more"),
    ("train: {ddp_timeout: 0}", "train.ddp_timeout: expected 1 or more (seconds), got 0"),
    ("train: {master_port: 70000}", "train.master_port: expected a port number between 1 and 65535"),
    ("train: {rdzv_endpoint: node0}", "train.rdzv_endpoint: expected host:port (a c10d rendezvous"),
    ("train: {nodes: 2}", "train.nodes is 2: set train.rdzv_endpoint (host:port) or train.master_addr"),
    ("train: {master_addr: node0}", "train.master_addr and train.master_port go together; set both"),
    (
        "train: {rdzv_endpoint: 'node0:29400', master_addr: node0, master_port: 29500}",
        "train.rdzv_endpoint and train.master_addr/master_port are two ways to meet; set one of them",
    ),
    ("load: {encoding: klingon}", "load.encoding: expected a text encoding Python knows (e.g. utf-8"),
    ("load: {overlap: ignore}", "load.overlap: expected one of fail, drop, got 'ignore'"),
    ("load: {dedupe: within}", "load.dedupe: expected one of all, train, none, got 'within'"),
    ("train: {batch_size: 0}", "train.batch_size: expected 1 or more, got 0"),
    ("train: {eval_batch_size: 0}", "train.eval_batch_size: expected 1 or more, got 0"),
    ("train: {evaluations_per_epoch: 0}", "train.evaluations_per_epoch: expected 1 or more, got 0"),
    ("train: {early_stopping_patience: 0}", "train.early_stopping_patience: expected 1 or more, got 0"),
    ("train: {freeze_layers: -1}", "train.freeze_layers: expected 0 or more, got -1"),
    ("train: {max_train_samples: 0}", "train.max_train_samples: expected 1 or more, or null, got 0"),
    ("train: {eval_max_samples: 0}", "train.eval_max_samples: expected 1 or more, or null, got 0"),
    ("train: {logging_steps: 0}", "train.logging_steps: expected 1 or more, got 0"),
    (
        "train: {master_addr: '-oProxyCommand=x', master_port: 29500}",
        "train.master_addr: expected a host name or IP address (e.g. node0, 10.0.0.1), or null, got '-o",
    ),
    ("load: {format: xlsx}", "load.format: expected one of csv, tsv, json, jsonl, parquet, conll, tagged"),
    ("load: {tag_scheme: bio}", "load.tag_scheme: expected one of auto, iob2, iob1, none, got 'bio'"),
    ("load: {conll: {tag_repair: yes}}", "load.conll.tag_repair: expected one of none, fix, got True"),
    ("load: {split: {validation: 0}}", "load.split.validation: expected above 0 and below 1, got 0.0"),
    ("load: {split: {test: 1.5}}", "load.split.test: expected above 0 and below 1, got 1.5"),
    ("load: {split: {validation: 0.5, test: 0.5}}", "load.split: validation + test must be below 1"),
    ("load: {preset: glue/nope}", "load.preset 'glue/nope' is unknown"),
    ("validate: {min_chars: -1}", "validate.min_chars: expected 0 or more, got -1"),
    ("validate: {min_chars: 10, max_chars: 5}", "validate.max_chars: expected at least validate.min_chars"),
    ("validate: {min_rows_per_class: -2}", "validate.min_rows_per_class: expected 0 or more, got -2"),
    (
        "validate: {min_eval_rows_per_class: -1}",
        "validate.min_eval_rows_per_class: expected 0 or more, or null, got -1",
    ),
    ("validate: {max_truncated_share: 1.5}", "validate.max_truncated_share: expected between 0 and 1"),
    ("validate: {target_range: [5, 0]}", "validate.target_range: expected [min, max]"),
    ("tokenize: {max_length: 4}", "tokenize.max_length: expected 8 or more"),
    ("evaluate: {batch_size: 0}", "evaluate.batch_size: expected 1 or more, got 0"),
    ("evaluate: {metrics: [auc]}", "evaluate.metrics: unknown auc; choose from matthews_correlation, f1"),
    ("task: regression\nevaluate: {metrics: [f1]}", "evaluate.metrics: f1 apply to sequence_classification"),
    ("evaluate: {thresholds: {rmse: {max: 0.5}}}", "evaluate.thresholds.rmse: task sequence_classification"),
    (
        "evaluate: {thresholds: {f1: 0.8}}",
        "evaluate.thresholds.f1: f1 is reported only when evaluate.metrics",
    ),
    (
        "task: regression\nevaluate: {thresholds: {mse: 0.5}}",
        "evaluate.thresholds.mse: a plain number is ambiguous: lower mse is better, so its threshold is "
        "a maximum; write `mse: {max: 0.5}`",
    ),
    (
        "task: regression\nevaluate: {thresholds: {rmse: {min: 0.5}}}",
        "evaluate.thresholds.rmse: a minimum does not fit: lower rmse is better",
    ),
    (
        "evaluate: {thresholds: {accuracy: {max: 0.9}}}",
        "evaluate.thresholds.accuracy: higher accuracy is better, so its threshold is a minimum; "
        "write `accuracy: 0.9`",
    ),
    ("evaluate: {thresholds: {accuracy: {above: 0.9}}}", "accuracy: expected a number, {min: x} or {max: x}"),
    (
        "evaluate: {thresholds: {accuracy: high}}",
        "evaluate.thresholds.accuracy: expected a number, got 'high'",
    ),
    ("evaluate: {thresholds: [accuracy]}", "evaluate.thresholds: expected a mapping metric -> threshold"),
    (
        "evaluate: {thresholds: {accuracy: .nan}}",
        "evaluate.thresholds.accuracy: expected a finite number, got nan",
    ),
    (
        "evaluate: {thresholds: {accuracy: 1.5}}",
        "evaluate.thresholds.accuracy: expected between 0 and 1 (the range of accuracy), got 1.5",
    ),
    (
        "evaluate: {thresholds: {accuracy: -3}}",
        "evaluate.thresholds.accuracy: expected between 0 and 1 (the range of accuracy), got -3",
    ),
    (
        "evaluate: {thresholds: {f1_macro: {min: 2}}}",
        "evaluate.thresholds.f1_macro.min: expected between 0 and 1",
    ),
    (
        "evaluate: {metrics: [matthews_correlation], thresholds: {matthews_correlation: -1.5}}",
        "evaluate.thresholds.matthews_correlation: expected between -1 and 1",
    ),
    (
        "task: regression\nevaluate: {thresholds: {pearson: 1.5}}",
        "evaluate.thresholds.pearson: expected between -1 and 1 (the range of pearson), got 1.5",
    ),
    (
        "task: regression\nevaluate: {thresholds: {mae: {max: -0.1}}}",
        "evaluate.thresholds.mae.max: expected 0 or more (the range of mae), got -0.1",
    ),
    ("task: regression\nevaluate: {thresholds: {mse: {max: .inf}}}", "thresholds.mse.max: expected a finite"),
    ("register: {bump: huge}", "register.bump: expected one of major, minor, patch, got 'huge'"),
    ("register: {require_versioned: maybe}", "register.require_versioned: expected true or false"),
    ("register: {license: Apache 2.0}", "register.license: expected a license id as the Hugging Face hub"),
    ("register: {name: ../../etc}", "register.name: expected a name of letters, digits, '.', '_', '+'"),
    ("search: {sampler: random}", "search.sampler: expected one of tpe, grid, got 'random'"),
    ("search: {trials: -1}", "search.trials: expected 0 or more, got -1"),
    ("search: {metric: accuracy_macro}", "search.metric: 'accuracy_macro' is not reported for task"),
    ("search: {space: {learning_rat: [0.1]}}", "search.space.learning_rat: not a train.* parameter"),
    (
        "search: {space: {lora.r: [4, 8], learning_rate: [0.001]}}",
        "search.space.lora.r: train.adapter is none, so LoRA's values would change nothing in a trial",
    ),
    ("search: {space: {batch_size: [16, 8.5]}}", "search.space.batch_size[1]: expected an integer"),
    ("search: {space: {device: [cpu, gpu]}}", "search.space.device[1]: expected one of auto, cpu, cuda"),
    ("search: {space: {warmup_ratio: {low: 0.0}}}", "search.space.warmup_ratio: a range is {low, high}"),
    ("search: {space: {learning_rate: [1.0e-5, .nan]}}", "search.space.learning_rate[1]: expected a finite"),
    (
        "search: {space: {learning_rate: {low: 1.0e-5, high: .inf, log: true}}}",
        "search.space.learning_rate.high: expected a finite number, got inf",
    ),
    (
        "search: {space: {epochs: {low: 1, high: 3, step: .inf}}}",
        "search.space.epochs.step: expected a finite",
    ),
    (
        "search: {space: {batch_size: {low: 8, high: .nan}}}",
        "search.space.batch_size.high: expected a finite",
    ),
    (
        "search: {sampler: grid, space: {learning_rate: {low: 1.0e-5, high: 1.0e-3}}}",
        "search.space.learning_rate: the grid sampler needs a list of values",
    ),
    ("train: {adapter: qlora}", "train.adapter: expected one of none, lora, got 'qlora'"),
    ("train: {lora: {r: 0}}", "train.lora.r: expected 1 or more, got 0"),
    ("train: {lora: {alpha: 0}}", "train.lora.alpha: expected 1 or more, got 0"),
    ("train: {lora: {dropout: 1.0}}", "train.lora.dropout: expected at least 0 and below 1, got 1.0"),
    ("train: {lora: {rank: 8}}", "train.lora: unknown field(s) rank; expected one of alpha, dropout, r"),
    ("train: {adapter: lora, freeze: head_only}", "train.freeze: head_only and train.adapter: lora both"),
    ("search: {space: {lora.r: [4, 0]}}", "search.space.lora.r[1]: expected 1 or more, got 0"),
    ("search: {space: {lora: [4]}}", "search.space.lora: not a train.* parameter"),
    ("promote: {resamples: 999}", "promote.resamples: expected 1000 or more"),
    ("promote: {confidence: 1.0}", "promote.confidence: expected above 0 and below 1, got 1.0"),
    ("promote: {min_delta: -0.1}", "promote.min_delta: expected 0 or more"),
    ("promote: {metric: accuracy_macro}", "promote.metric: 'accuracy_macro' is not reported for task"),
    ("promote: {metric: loss}", "promote.metric: loss is not a test metric"),
    ("promote: {stage: 'pro d'}", "promote.stage: expected a GTO stage name"),
    ("promote: {require_significant: 'yes'}", "promote.require_significant: expected true or false"),
    ("promote: {guards: 0.01}", "promote.guards: expected a mapping, got 0.01"),
    ("drift: {max_label_shift: 1.5}", "drift.max_label_shift: expected between 0 and 1, or null, got 1.5"),
    ("drift: {max_length_ks: -0.1}", "drift.max_length_ks: expected between 0 and 1, or null, got -0.1"),
    ("drift: {max_oov_rate: 2}", "drift.max_oov_rate: expected between 0 and 1, or null, got 2.0"),
    ("drift: {max_unk_rate: -1}", "drift.max_unk_rate: expected between 0 and 1, or null, got -1.0"),
    ("drift: {max_score_drop: -0.5}", "drift.max_score_drop: expected 0 or more, or null, got -0.5"),
    ("promote: {guards: {recall_macro: -0.01}}", "promote.guards.recall_macro: expected 0 or more"),
    ("promote: {guards: {mse: 0.1}}", "promote.guards.mse: task sequence_classification does not report it"),
    ("promote: {min_class_recall: 1.5}", "promote.min_class_recall: expected between 0 and 1, or null"),
]


@pytest.mark.parametrize(("fragment", "message"), BAD, ids=[row[1].split(":")[0] for row in BAD])
def test_bad_value_fails_on_read_naming_the_field(fragment: str, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        params.parse(yaml.safe_load(fragment))
    assert str(info.value).startswith("params.yaml: ")
    assert message in str(info.value)


def test_every_checked_field_has_a_row() -> None:
    """A new choice, range or check on a params field gets a row here."""
    fields = {message.split(":")[0] for _, message in BAD}
    assert [n for n in params.checked_fields() if n not in fields] == []


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("evaluate: {thresholds: {accuracy: 0.8}}", {"accuracy": Threshold(min=0.8)}),
        ("evaluate: {thresholds: {accuracy: {min: 0.8}}}", {"accuracy": Threshold(min=0.8)}),
        ("task: regression\nevaluate: {thresholds: {mse: {max: 0.5}}}", {"mse": Threshold(max=0.5)}),
        (
            "task: regression\nevaluate: {thresholds: {pearson: 0.7, mae: {max: 1}}}",
            {"pearson": Threshold(min=0.7), "mae": Threshold(max=1.0)},
        ),
        ("evaluate: {metrics: [f1], thresholds: {f1: 0.8}}", {"f1": Threshold(min=0.8)}),
        # tag_scheme auto is decided by the data: entity f1 and token accuracy are both possible
        ("task: token_classification\nevaluate: {thresholds: {f1: 0.5}}", {"f1": Threshold(min=0.5)}),
        (
            "task: token_classification\nevaluate: {thresholds: {f1_macro: 0.5}}",
            {"f1_macro": Threshold(min=0.5)},
        ),
    ],
)
def test_thresholds_in_the_written_forms(fragment: str, expected: dict[str, Threshold]) -> None:
    assert params.parse(yaml.safe_load(fragment)).evaluate.thresholds == expected


def test_threshold_passes_by_its_bound() -> None:
    assert Threshold(max=0.5).passes(0.3) and Threshold(max=0.5).passes(0.5)
    assert not Threshold(max=0.5).passes(0.7)
    assert Threshold(min=0.8).passes(0.9) and not Threshold(min=0.8).passes(0.7)
    assert not Threshold(min=0.8).passes(None)
    assert (str(Threshold(min=0.8)), str(Threshold(max=0.5))) == (">= 0.8", "<= 0.5")
    with pytest.raises(ValueError, match="one of min and max"):
        Threshold(min=0.1, max=0.9)


def test_yaml_1_1_number_strings_are_read_as_numbers() -> None:
    """PyYAML reads 5e-5 as the string '5e-5': float fields take the number it means."""
    p = params.parse(
        yaml.safe_load(
            textwrap.dedent(
                """
                train: {learning_rate: 5e-5, weight_decay: 1e-2}
                task: regression
                evaluate: {thresholds: {mse: {max: 5e-1}}}
                search:
                  space:
                    learning_rate: {low: 1e-5, high: 1e-3, log: true}
                    weight_decay: [0.0, 1e-2]
                    epochs: [1, 2]
                """
            )
        )
    )
    assert p.train.learning_rate == pytest.approx(5e-5) and isinstance(p.train.learning_rate, float)
    assert p.train.weight_decay == pytest.approx(0.01)
    assert p.evaluate.thresholds == {"mse": Threshold(max=0.5)}
    assert p.search.space["learning_rate"] == {"low": 1e-5, "high": 1e-3, "log": True}
    assert p.search.space["weight_decay"] == [0.0, 0.01]
    assert p.search.space["epochs"] == [1, 2] and isinstance(p.search.space["epochs"][0], int)


def test_nulls_and_edges_are_accepted() -> None:
    p = params.parse(
        {
            "load": {"format": None, "split": {"validation": 0.45, "test": 0.45}},
            "validate": {"min_chars": 0, "max_chars": 0, "min_rows_per_class": 0, "max_truncated_share": 1.0},
            "tokenize": {"max_length": 8},
            "search": {"trials": 0},
        }
    )
    assert (p.load.format, p.tokenize.max_length, p.search.trials) == (None, 8, 0)
    assert params.parse({"tokenize": {"max_length": None}}).tokenize.max_length is None


def test_load_formats_are_what_the_readers_read() -> None:
    assert set(params.LOAD_FORMATS) == {*sources.READERS, *sources.TOKEN_FORMATS}


@pytest.mark.parametrize("path", [REPO / "params.yaml", *sorted((REPO / "examples").glob("*.yaml"))])
def test_shipped_params_files_parse(path: Path) -> None:
    params.read(path)
