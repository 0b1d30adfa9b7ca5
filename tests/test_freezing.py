"""Freezing: the right parameters train for each mode and architecture, and frozen weights never move."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from tunepipe.freezing import GradualUnfreezing, apply_freezing, count_parameters, encoder_parts

pytestmark = pytest.mark.unit

TINY = {"vocab_size": 100, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 37}


@dataclass(frozen=True)
class Arch:
    """A tiny model and, by parameter-name prefix, which group each parameter should land in."""

    build: Callable[[], tf.PreTrainedModel]
    embeddings: tuple[str, ...]
    layer: str  # prefix with {i} for the layer index
    n_layers: int
    head: tuple[str, ...]
    shared: tuple[str, ...] = ()


ARCHS = {
    "bert": Arch(
        lambda: tf.BertForSequenceClassification(tf.BertConfig(**TINY, num_hidden_layers=3)),
        ("bert.embeddings.",),
        "bert.encoder.layer.{i}.",
        3,
        ("bert.pooler.", "classifier."),  # BERT's pooler feeds the classifier: it trains with the head
    ),
    "distilbert": Arch(
        lambda: tf.DistilBertForSequenceClassification(
            tf.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
        ),
        ("distilbert.embeddings.",),
        "distilbert.transformer.layer.{i}.",
        2,
        ("pre_classifier.", "classifier."),
    ),
    "roberta": Arch(
        # RoBERTa offsets positions by pad_token_id + 1, hence the two extra position slots.
        lambda: tf.RobertaForSequenceClassification(
            tf.RobertaConfig(**TINY, num_hidden_layers=2, pad_token_id=1, max_position_embeddings=66)
        ),
        ("roberta.embeddings.",),
        "roberta.encoder.layer.{i}.",
        2,
        ("classifier.",),
    ),
    "albert": Arch(
        # Four passes through one shared layer: one layer's worth of weights to freeze.
        lambda: tf.AlbertForSequenceClassification(
            tf.AlbertConfig(**TINY, num_hidden_layers=4, embedding_size=16)
        ),
        ("albert.embeddings.", "albert.encoder.embedding_hidden_mapping_in."),
        "albert.encoder.albert_layer_groups.{i}.",
        1,
        ("albert.pooler.", "classifier."),
    ),
    "electra": Arch(
        lambda: tf.ElectraForTokenClassification(
            tf.ElectraConfig(**TINY, num_hidden_layers=2, embedding_size=16, num_labels=5)
        ),
        ("electra.embeddings.", "electra.embeddings_project."),
        "electra.encoder.layer.{i}.",
        2,
        ("classifier.",),
    ),
    "deberta-v2": Arch(
        lambda: tf.DebertaV2ForSequenceClassification(
            tf.DebertaV2Config(
                **TINY,
                num_hidden_layers=2,
                relative_attention=True,
                position_buckets=8,
                norm_rel_ebd="layer_norm",
                conv_kernel_size=3,
            )
        ),
        ("deberta.embeddings.",),
        "deberta.encoder.layer.{i}.",
        2,
        ("pooler.", "classifier."),
        ("deberta.encoder.rel_embeddings.", "deberta.encoder.LayerNorm.", "deberta.encoder.conv."),
    ),
}


def groups(arch: Arch, model: tf.PreTrainedModel) -> dict[str, set[str]]:
    """Parameter names per group by the table's prefixes; every name must match exactly one group."""
    prefixes = {"embeddings": arch.embeddings, "head": arch.head, "shared": arch.shared}
    prefixes |= {f"layer{i}": (arch.layer.format(i=i),) for i in range(arch.n_layers)}
    out: dict[str, set[str]] = {g: set() for g in prefixes}
    for name, _ in model.named_parameters():
        hits = [g for g, pre in prefixes.items() if name.startswith(pre)]
        assert len(hits) == 1, f"{name} matches {hits}"
        out[hits[0]].add(name)
    return out


def trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def expected_trainable(g: dict[str, set[str]], frozen_layers: int | None, n_layers: int) -> set[str]:
    """frozen_layers None: full fine-tuning; otherwise embeddings plus that many bottom layers are frozen."""
    if frozen_layers is None:
        return set().union(*g.values())
    keep = g["head"] | set().union(*(g[f"layer{i}"] for i in range(frozen_layers, n_layers)))
    return keep | (g["shared"] if frozen_layers < n_layers else set())


@pytest.fixture(params=list(ARCHS))
def arch_model(request: pytest.FixtureRequest) -> tuple[Arch, tf.PreTrainedModel]:
    torch.manual_seed(0)
    arch = ARCHS[request.param]
    return arch, arch.build()


def test_encoder_parts_finds_embeddings_and_layers(arch_model: tuple[Arch, tf.PreTrainedModel]) -> None:
    arch, model = arch_model
    base, embeddings, layers = encoder_parts(model)
    assert base is model.base_model
    assert embeddings is not None
    assert any(m is base.get_input_embeddings() for m in embeddings.modules())
    assert len(layers) == arch.n_layers
    names = {id(m): n for n, m in model.named_modules()}
    assert [names[id(layer)] + "." for layer in layers] == [
        arch.layer.format(i=i) for i in range(arch.n_layers)
    ]


@pytest.mark.parametrize("mode", ["none", "embeddings", "first_n", "head_only"])
def test_each_mode_trains_exactly_the_expected_parameters(
    arch_model: tuple[Arch, tf.PreTrainedModel], mode: str
) -> None:
    arch, model = arch_model
    model.requires_grad_(False)  # a mode also unfreezes whatever it does not freeze
    g, n = groups(arch, model), arch.n_layers
    frozen = {"none": None, "embeddings": 0, "first_n": 1, "head_only": n}[mode]
    counts = apply_freezing(model, mode, layers=1)
    assert trainable(model) == expected_trainable(g, frozen, n)
    assert counts == {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen_layers": frozen or 0,
        "encoder_layers": n,
    }
    assert count_parameters(model) == {
        "total": counts["total"],
        "trainable": counts["trainable"],
        "frozen": counts["total"] - counts["trainable"],
    }


def test_first_n_all_layers_equals_head_only(arch_model: tuple[Arch, tf.PreTrainedModel]) -> None:
    arch, model = arch_model
    apply_freezing(model, "head_only")
    head_only = trainable(model)
    apply_freezing(model, "first_n", arch.n_layers)
    assert trainable(model) == head_only
    apply_freezing(model, "embeddings")
    embeddings_only = trainable(model)
    apply_freezing(model, "first_n", 0)
    assert trainable(model) == embeddings_only


def test_bad_mode_and_layer_count_are_rejected() -> None:
    model = ARCHS["distilbert"].build()
    with pytest.raises(ValueError, match="none, head_only, embeddings, first_n"):
        apply_freezing(model, "top_k")
    for bad in (-1, 3):
        with pytest.raises(ValueError, match="has 2 encoder layers"):
            apply_freezing(model, "first_n", bad)


def tiny_bert(layers: int = 2, seed: int = 0) -> tf.BertForSequenceClassification:
    """A tiny BERT whose every weight (zero-initialised biases too) is non-zero, so weight decay shows."""
    torch.manual_seed(seed)
    model = tf.BertForSequenceClassification(tf.BertConfig(**TINY, num_hidden_layers=layers))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("mode", "layers"), [("first_n", 1), ("head_only", 0), ("embeddings", 0)])
def test_frozen_weights_stay_bit_identical_in_training(mode: str, layers: int) -> None:
    model = tiny_bert()
    apply_freezing(model, mode, layers)
    before, should_train = snapshot(model), trainable(model)
    # Every parameter in the optimizer, with weight decay: frozen ones must still be skipped.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        ids = torch.randint(0, 100, (8, 12), generator=generator)
        labels = torch.randint(0, 2, (8,), generator=generator)
        opt.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        assert {n for n, p in model.named_parameters() if p.grad is not None} == should_train
        opt.step()
    after = dict(model.named_parameters())
    assert {n for n in before if not torch.equal(before[n], after[n])} == should_train


def test_freezing_drops_stale_gradients_so_weight_decay_skips_them() -> None:
    model = tiny_bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model(input_ids=torch.randint(0, 100, (4, 8)), labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    apply_freezing(model, "head_only")  # mid-step: every parameter holds a gradient
    before = snapshot(model)
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if not p.requires_grad)


class EpochSnapshots(tf.TrainerCallback):
    """Weights before training and at the end of every epoch."""

    def __init__(self) -> None:
        self.snaps: list[dict[str, torch.Tensor]] = []

    def on_train_begin(self, args: object, state: object, control: object, **kwargs: Any) -> None:
        self.snaps.append(snapshot(kwargs["model"]))

    def on_epoch_end(self, args: object, state: object, control: object, **kwargs: Any) -> None:
        self.snaps.append(snapshot(kwargs["model"]))


def tiny_trainer(
    model: tf.PreTrainedModel, tmp_path: Path, callbacks: list[tf.TrainerCallback], epochs: int = 3
) -> tf.Trainer:
    generator = torch.Generator().manual_seed(0)
    data = [
        {"input_ids": torch.randint(0, 100, (12,), generator=generator), "labels": i % 2} for i in range(16)
    ]
    args = tf.TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        weight_decay=0.1,
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    return tf.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)


def test_gradual_unfreezing_opens_one_layer_per_epoch_from_the_top(tmp_path: Path) -> None:
    model = tiny_bert(layers=3)
    unfreeze, seen = GradualUnfreezing(), EpochSnapshots()
    # GradualUnfreezing first, so the on_train_begin snapshot is taken after it froze (order does not matter).
    tiny_trainer(model, tmp_path, [unfreeze, seen]).train()
    init, *epochs = seen.snaps
    assert len(epochs) == 3 and unfreeze.unfrozen_layers == 3

    def moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> bool:
        names = [n for n in a if n.startswith(prefix)]
        assert names
        return any(not torch.equal(a[n], b[n]) for n in names)

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> bool:
        return all(torch.equal(a[n], b[n]) for n in a if n.startswith(prefix))

    layer = "bert.encoder.layer.{}.".format
    for epoch, snap in enumerate(epochs, start=1):
        prev = init if epoch == 1 else epochs[epoch - 2]
        top_open = 3 - epoch  # lowest trainable layer index this epoch
        assert moved(prev, snap, layer(top_open)), f"layer {top_open} should train from epoch {epoch}"
        assert moved(prev, snap, "classifier.") and moved(prev, snap, "bert.pooler.")
        for below in range(top_open):
            assert same(init, snap, layer(below)), f"layer {below} moved before its epoch ({epoch})"
        assert same(init, snap, "bert.embeddings.")


def test_gradual_unfreezing_refuses_an_optimizer_without_the_frozen_parameters(tmp_path: Path) -> None:
    model = tiny_bert()
    apply_freezing(model, "head_only")  # too early: the Trainer's optimizer would never see the encoder
    with pytest.raises(RuntimeError, match="optimizer lacks"):
        tiny_trainer(model, tmp_path, [GradualUnfreezing()], epochs=1).train()
