"""LoRA adapters (Hugging Face peft) and gradient checkpointing for the train stage.

The base model's weights stay frozen; small low-rank matrices beside the attention projections
train, with the task head. What the pipeline ships is the ordinary transformers folder with the
adapters merged in (predict, pipeline(), fetch, verify and the model card need no peft), plus
the adapters alone (models/adapter/) for teams that keep one base model and swap adapters.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from tunepipe.errors import PipelineError
from tunepipe.params import Params

# Attention projections that get adapters by default, by config.model_type: LoRA's paper adapts
# the query and value projections, which is what peft does for these families too.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],  # also MiniLM, BERT-based sentence encoders
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "ernie": ["query", "value"],
    "modernbert": ["Wqkv"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
}
# Tried in order for a family not listed: the first pair present in the model is used.
FALLBACK_TARGETS = (["query", "value"], ["query_proj", "value_proj"], ["q_lin", "v_lin"], ["q", "v"])
TARGETS_KEY = "train.lora.target_modules"
# models/adapter/ of a run without adapters (DVC needs the output to exist).
NO_ADAPTER = (
    "No adapter: this model was trained with train.adapter: none, so models/model holds all of it.\n"
    "With train.adapter: lora this folder holds the LoRA adapters and the trained head alone\n"
    "(peft's adapter_config.json and adapter_model.safetensors); models/model has them merged in.\n"
)


def linear_names(model: torch.nn.Module) -> list[str]:
    """The last name part of every linear layer in the base model (what target_modules names)."""
    base = getattr(model, "base_model", model)
    linear = (name for name, m in base.named_modules() if isinstance(m, torch.nn.Linear))
    return sorted({name.rsplit(".", 1)[-1] for name in linear})


def _matches(model: torch.nn.Module, target: str) -> bool:
    """peft's rule for a string in target_modules: the full module name, or its last part(s)."""
    base = getattr(model, "base_model", model)
    return any(
        isinstance(m, torch.nn.Linear) and (name == target or name.endswith(f".{target}"))
        for name, m in base.named_modules()
    )


def target_modules(model: Any, asked: list[str] | None) -> list[str]:
    """train.lora.target_modules, or the family's default; an error naming the model's linear
    layers when a name matches none of them (peft would adapt nothing, or fail later)."""
    family = getattr(model.config, "model_type", "?")
    where = f"{type(model).__name__} ({family})"
    names = ", ".join(linear_names(model))
    if asked:
        missing = [t for t in asked if not _matches(model, t)]
        if missing:
            raise PipelineError(
                f"params.yaml: {TARGETS_KEY}: {', '.join(missing)} matches no linear layer of {where}; "
                f"its linear layers are named {names}: set {TARGETS_KEY} to some of them"
            )
        return list(asked)
    for candidate in [DEFAULT_TARGETS.get(family, []), *FALLBACK_TARGETS]:
        if candidate and all(_matches(model, t) for t in candidate):
            return list(candidate)
    raise PipelineError(
        f"params.yaml: {TARGETS_KEY} is null and {where} has none of the known attention projections; "
        f"its linear layers are named {names}: set {TARGETS_KEY} to the ones to adapt"
    )


def head_modules(model: Any) -> list[str]:
    """The task head: the model's children outside the base model that hold weights (classifier,
    DistilBERT's pre_classifier, ...). They train in full, saved with the adapter."""
    prefix = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


def describe(p: Params, targets: list[str] | None = None) -> dict[str, Any] | None:
    """The adapter settings as recorded in the train report, lineage and card (None: no adapter)."""
    t = p.train
    if t.adapter == "none":
        return None
    lora = t.lora.model_dump()
    if targets is not None:
        lora["target_modules"] = targets
    return {"kind": t.adapter, **lora}


def add_lora(model: Any, p: Params) -> tuple[Any, list[str]]:
    """The model wrapped with LoRA adapters (a peft PeftModel) and the modules they adapt."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = p.train.lora
    targets = target_modules(model, lora.target_modules)
    config = LoraConfig(
        task_type=TaskType.TOKEN_CLS if p.task == "token_classification" else TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=head_modules(model),
    )
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias: nothing a user can change.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return get_peft_model(model, config), targets


def check_gradient_checkpointing(model: Any) -> None:
    """train.gradient_checkpointing on a model class without it fails here, before training."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise PipelineError(
            f"params.yaml: train.gradient_checkpointing: {type(model).__name__} does not support "
            "gradient checkpointing; set train.gradient_checkpointing: false"
        )


def enable_gradient_checkpointing(model: Any) -> None:
    """Checkpointing through the non-reentrant path, which needs no gradient on the inputs: with
    LoRA the embeddings are frozen, and the reentrant path would then drop every adapter's grad."""
    check_gradient_checkpointing(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def is_adapted(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def save_adapter(model: Any, out: Path, base_name: str) -> None:
    """The adapters and the trained head alone (adapter_config.json, adapter_model.safetensors)."""
    for config in model.peft_config.values():
        # the base as params.yaml names it, not this machine's resolved path: the same bytes on
        # every machine (DVC hashes the folder)
        config.base_model_name_or_path = base_name
    model.save_pretrained(str(out), safe_serialization=True)
    # peft writes its own README stub: the pipeline's card lives with the merged model.
    (out / "README.md").unlink(missing_ok=True)


def merged(model: Any) -> Any:
    """A plain transformers model with the adapters folded into the base weights (W + B A x
    alpha/r) and the trained head in place: it loads and runs without peft."""
    return model.merge_and_unload()
