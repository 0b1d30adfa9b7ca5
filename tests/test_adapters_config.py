"""LoRA and gradient checkpointing without training: what is refused, the default target modules
per family, search keys under train.lora, and how the run report shows an adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def test_gradient_checkpointing_refused_where_the_model_lacks_it() -> None:
    from transformers import AlbertConfig, AlbertForSequenceClassification

    from tunepipe.adapters import check_gradient_checkpointing, target_modules

    config = AlbertConfig(
        vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64,
    )
    model = AlbertForSequenceClassification(config)
    with pytest.raises(PipelineError, match=r"train.gradient_checkpointing: AlbertForSequenceClassification "
                       r"does not support gradient checkpointing; set train.gradient_checkpointing: false"):
        check_gradient_checkpointing(model)
    assert target_modules(model, None) == ["query", "value"]


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [("distilbert", ["q_lin", "v_lin"]), ("deberta-v2", ["query_proj", "value_proj"]),
     ("roberta", ["query", "value"])],
)
def test_default_target_modules_by_family(model_type: str, expected: list[str]) -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from tunepipe.adapters import target_modules

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    if model_type == "distilbert":
        small = {"dim": 32, "hidden_dim": 64, "n_layers": 1, "n_heads": 2}
    config = AutoConfig.for_model(model_type, vocab_size=100, **small)
    model = AutoModelForSequenceClassification.from_config(config)
    assert target_modules(model, None) == expected


def test_search_values_under_lora_reach_the_trial_and_params_yaml(tmp_path: Path) -> None:
    import yaml

    from tunepipe import params
    from tunepipe.search import trial_params
    from tunepipe.search_apply import apply_best

    p = params.parse({"train": {"adapter": "lora"}, "search": {"space": {"lora.r": [4, 16]}}})
    trial = trial_params(p, {"lora.r": 16, "learning_rate": 1e-3}, "accuracy")
    assert (trial.train.lora.r, trial.train.lora.alpha, trial.train.learning_rate) == (16, 16, 1e-3)
    (tmp_path / "params.yaml").write_text("train:\n  adapter: lora  # kept\n")
    assert apply_best(tmp_path, {"lora.r": 16}) == ["train.lora.r"]
    text = (tmp_path / "params.yaml").read_text()
    assert "# kept" in text and yaml.safe_load(text)["train"]["lora"] == {"r": 16}


def test_report_rows_show_the_adapter_and_trainable_counts() -> None:
    from tunepipe.report import lineage_facts

    training = {
        "parameters": {"total": 22_713_986, "trainable": 148_226, "frozen": 22_565_760},
        "adapter": {"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "value"]},  # noqa: E501
    }
    rows = dict(lineage_facts({"training": training}))
    assert rows["trainable parameters"] == "148,226 of 22,713,986"
    assert rows["adapter"].startswith("LoRA r 8, alpha 16, dropout 0.1 on query, value; merged")
    assert dict(lineage_facts({"training": {**training, "adapter": None}}))["adapter"].startswith("none")
    assert "adapter" not in dict(lineage_facts({"training": {}}))  # records from before adapters


def test_target_modules_error_names_the_linear_layers() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    from tunepipe.adapters import target_modules

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)  # fmt: skip
    model = BertForSequenceClassification(config)
    assert target_modules(model, ["attention.self.query", "dense"]) == ["attention.self.query", "dense"]
    with pytest.raises(PipelineError, match=r"train.lora.target_modules: qkv matches no linear layer of "
                       r"BertForSequenceClassification \(bert\); its linear layers are named dense, key, "
                       r"query, value: set"):  # fmt: skip
        target_modules(model, ["query", "qkv"])


def test_wrapping_a_model_in_lora_says_nothing_of_library_internals() -> None:
    """peft reads transformers' deprecated `is_gradient_checkpointing`: a FutureWarning on every
    LoRA train that the user can do nothing about."""
    import warnings

    from transformers import BertConfig, BertForSequenceClassification

    from tunepipe import params
    from tunepipe.adapters import add_lora

    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    p = params.parse({"train": {"adapter": "lora"}})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model, targets = add_lora(BertForSequenceClassification(config), p)
    assert targets == ["query", "value"] and model.peft_config
    assert [str(w.message) for w in seen] == []
