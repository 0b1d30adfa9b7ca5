"""Freezing through the train stage: frozen weights leave training bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import make_project, set_params

pytestmark = pytest.mark.stage


def test_first_n_frozen_layers_stay_bit_identical(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import load, tokenize, validate
    from tunepipe import params, training

    project = make_project(tmp_path / "p", tiny_bert)
    set_params(project, **{"train.freeze": "first_n", "train.freeze_layers": 1, "train.epochs": 2})
    monkeypatch.chdir(project)
    for stage in (load, validate, tokenize):
        stage.main()
    report = training.train(params.read("params.yaml"))

    before = load_file(str(tiny_bert / "model.safetensors"))
    after = load_file("models/model/model.safetensors")
    encoder = {k.removeprefix("bert."): v for k, v in after.items() if k.startswith("bert.")}
    frozen = [k for k in before if k.startswith(("embeddings.", "encoder.layer.0."))]
    trained = [k for k in before if k.startswith("encoder.layer.1.")]
    assert frozen and trained
    for name in frozen:
        assert torch.equal(before[name], encoder[name]), name
    for name in trained:
        assert not torch.equal(before[name], encoder[name]), name
    counts = report["parameters"]
    frozen_numel = sum(before[k].numel() for k in frozen)
    assert counts["frozen"] == frozen_numel and counts["trainable"] == counts["total"] - frozen_numel
    assert json.loads(Path("reports/train.json").read_text())["parameters"] == counts

    set_params(project, **{"train.freeze_layers": 3})
    with pytest.raises(Exception, match="train.freeze first_n: .*2 encoder layers"):
        training.train(params.read("params.yaml"))


def test_gradient_accumulation_steps_make_the_global_batch(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches of 8 per optimizer step: the steps of a batch of 16, a loss on the scale of one
    batch's mean (two labels at start: about ln 2), not the sum of two."""
    from tasks import load, tokenize, validate
    from tunepipe import params, training

    project = make_project(tmp_path / "p", tiny_bert)
    set_params(project, **{"train.epochs": 2, "train.batch_size": 8, "train.gradient_accumulation_steps": 2})
    monkeypatch.chdir(project)
    for stage in (load, validate, tokenize):
        stage.main()
    report = training.train(params.read("params.yaml"))
    batch = {"per_device": 8, "processes": 1, "gradient_accumulation_steps": 2, "global": 16}
    assert report["batch"] == batch
    assert report["global_step"] == report["max_steps"] == 2 * 9  # 144 train rows / 16
    first = Path("reports/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1].split("\t")
    assert first[0] == "5" and 0.5 < float(first[1]) < 0.9


def test_a_large_validation_split_is_evaluated_on_a_fixed_sample_during_training(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """train.eval_max_samples: every in-training evaluation scores the same seeded sample; the
    stage says so, and the report and the model card record it."""
    from transformers import TrainerCallback

    from tasks import load, tokenize, validate
    from tunepipe import catalog, params, training

    class Evaluated(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[tuple[tuple[int, ...], ...]] = []

        def on_evaluate(self, args: object, state: object, control: object, **kwargs: object) -> None:
            dataset = kwargs["eval_dataloader"].dataset  # type: ignore[attr-defined]
            self.rows.append(tuple(tuple(ids) for ids in dataset["input_ids"]))

    project = make_project(tmp_path / "p", tiny_bert)
    set_params(project, **{"train.eval_max_samples": 10, "train.evaluations_per_epoch": 2})
    monkeypatch.chdir(project)
    for stage in (load, validate, tokenize):
        stage.main()
    whole = catalog.read_tokenized(catalog.TOKENIZED, ["validation"])["validation"]
    capsys.readouterr()
    report = training.train(params.read("params.yaml"), callbacks=(observer := Evaluated(),))
    out = capsys.readouterr().out
    assert len(observer.rows) >= 2 and len(set(observer.rows)) == 1  # the same rows every time
    assert len(observer.rows[0]) == 10
    every = {tuple(ids) for ids in whole["input_ids"]}
    assert set(observer.rows[0]) <= every and len(every) > 10
    assert report["validation_examples"] == {"evaluated": 10, "of": len(whole)}
    assert f"on a fixed sample of 10 of the {len(whole)} validation rows (train.eval_max_samples)" in out
    card = Path("models/model/README.md").read_text()
    assert f"fixed sample of 10 of the {len(whole)} validation rows" in card

    # the same seed, the same sample; without a limit, every row
    again = training.validation_sample(whole, 10, params.read("params.yaml").train.seed)
    assert {tuple(ids) for ids in again["input_ids"]} == set(observer.rows[0])
    assert len(training.validation_sample(whole, None, 1)) == len(training.validation_sample(whole, 10**6, 1))
    assert len(training.validation_sample(whole, None, 1)) == len(whole)


def test_in_training_evaluations_batch_the_validation_rows_shortest_first(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under train.group_by_length Trainer batches evaluation rows with its length-grouped sampler
    too, in random groups padded to their longest row; the rows sorted by length must stay in
    that order, each batch padded to a length close to its own."""
    from transformers import TrainerCallback

    from tasks import load, tokenize, validate
    from tunepipe import params, training

    class EvalBatches(TrainerCallback):
        def __init__(self) -> None:
            self.lengths: list[list[int]] = []

        def on_train_begin(self, args: object, state: object, control: object, **kwargs: object) -> None:
            kwargs["model"].register_forward_pre_hook(self.seen, with_kwargs=True)  # type: ignore[attr-defined]

        def seen(self, module: torch.nn.Module, args: object, kwargs: dict[str, torch.Tensor]) -> None:
            if not module.training:
                self.lengths[-1].append(kwargs["input_ids"].shape[1])

        def on_step_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
            if not self.lengths or self.lengths[-1]:
                self.lengths.append([])

    project = make_project(tmp_path / "p", tiny_bert)
    set_params(project, **{"train.group_by_length": True, "train.eval_batch_size": 4, "train.epochs": 1})
    monkeypatch.chdir(project)
    for stage in (load, validate, tokenize):
        stage.main()
    observer = EvalBatches()
    training.train(params.read("params.yaml"), callbacks=(observer,))
    evaluations = [batches for batches in observer.lengths if batches]
    assert evaluations and all(len(batches) > 3 for batches in evaluations)
    for batches in evaluations:
        assert batches == sorted(batches), batches
