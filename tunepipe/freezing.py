"""Which parameters train: layer freezing and gradual unfreezing for any BERT-family encoder.

Nothing here names one architecture's attributes; the parts are found from the module structure, so BERT,
RoBERTa/XLM-R, DistilBERT, ALBERT, ELECTRA, DeBERTa(-v2) and MiniLM all work through the same code.

Every parameter of a task model falls in one of four groups:

- embeddings: the module holding ``base_model.get_input_embeddings()``, plus every module registered *before*
  the encoder layers on the way down to them (input projections: ELECTRA's ``embeddings_project``, ALBERT's
  ``encoder.embedding_hidden_mapping_in``). They only transform the input, so they freeze with the embeddings.
- layers: the encoder layers, the longest ``nn.ModuleList`` in the base model.
- shared: modules registered *after* the layer list inside the encoder container (DeBERTa's
  ``rel_embeddings``/``LayerNorm``/``conv``). Every layer uses them, so they freeze only when all layers do.
- head: everything else. That is the classifier (anything outside ``base_model``) and base-model modules after
  the encoder, i.e. the pooler: BERT's and ALBERT's pooler feeds the classifier, so it trains with it.

"Before"/"after" is registration order, which in Hugging Face models follows the data flow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

log = logging.getLogger(__name__)

MODES = ("none", "head_only", "embeddings", "first_n")


def encoder_parts(
    model: PreTrainedModel,
) -> tuple[torch.nn.Module, torch.nn.Module | None, list[torch.nn.Module]]:
    """(base model, embeddings module or None, encoder layers bottom to top).

    The layers are the longest ``nn.ModuleList`` in the base model (ties: the outermost, first registered),
    because an encoder's layer stack is its one long list; smaller lists sit inside layers. ALBERT shares one
    layer's weights across all passes, so it has ``num_hidden_groups`` layers (usually 1), not
    ``num_hidden_layers``: freezing counts distinct weights, not applications.
    """
    base = model.base_model
    return base, _embeddings_module(base), list(_layer_list(base)[1])


def _layer_list(base: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """(dotted name, module) of the longest ModuleList; ties go to the outermost (pre-order walk)."""
    lists = [(name, m) for name, m in base.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(f"{type(base).__name__}: no encoder layer list (nn.ModuleList) in the base model")
    return max(lists, key=lambda item: len(item[1]))


def _embeddings_module(base: torch.nn.Module) -> torch.nn.Module | None:
    """The parent of the input embedding table, else the base model's child named like ``embeddings``."""
    try:
        table = base.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        table = None
    if table is not None:
        for module in base.modules():
            if module is not base and any(child is table for child in module.children()):
                return module
        if any(child is table for child in base.children()):
            return table  # the table sits directly on the base model: it is the embeddings
    named = [child for name, child in base.named_children() if "embedding" in name.lower()]
    return named[0] if named else None


@dataclass
class _Partition:
    embeddings: list[torch.nn.Parameter]
    layers: list[list[torch.nn.Parameter]]
    shared: list[torch.nn.Parameter]
    head: list[torch.nn.Parameter]


def _partition(model: PreTrainedModel) -> _Partition:
    """Each parameter in exactly one group (see the module docstring); a tied parameter goes to the first."""
    base, embeddings, layers = encoder_parts(model)
    path = _layer_list(base)[0].split(".")

    before: list[torch.nn.Module] = [embeddings] if embeddings is not None else []
    after_inside: list[torch.nn.Module] = []
    module = base
    for depth, step in enumerate(path):
        names = [name for name, _ in module.named_children()]
        at = names.index(step)
        before += [getattr(module, n) for n in names[:at]]
        if depth > 0:  # after the layers inside the encoder container: shared by all layers
            after_inside += [getattr(module, n) for n in names[at + 1 :]]
        module = getattr(module, step)

    seen: set[int] = set()

    def take(modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        out = []
        for m in modules:
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    # Keyword arguments evaluate in order: embeddings claim tied parameters first, the head last.
    return _Partition(
        embeddings=take(before),
        layers=[take([layer]) for layer in layers],
        shared=take(after_inside),
        head=take([model]),
    )


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts (numel; a tied parameter counts once)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def apply_freezing(model: PreTrainedModel, mode: str, layers: int = 0) -> dict[str, int]:
    """Set ``requires_grad`` for `mode`, unfreezing everything the mode does not freeze.

    none: full fine-tuning. embeddings: freeze the embeddings. first_n: freeze the embeddings and the bottom
    `layers` encoder layers. head_only: freeze the embeddings and every layer (= first_n with all layers),
    leaving the head and pooler. Frozen parameters lose their ``.grad``, so an optimizer holding them skips
    them: torch's Adam/AdamW/SGD step only parameters whose grad is not None, weight decay included.
    """
    if mode not in MODES:
        raise ValueError(f"unknown freezing mode {mode!r}; choose one of {', '.join(MODES)}")
    part = _partition(model)
    n_layers = len(part.layers)
    if mode == "first_n" and not 0 <= layers <= n_layers:
        raise ValueError(f"first_n: layers={layers} but {type(model).__name__} has {n_layers} encoder layers")
    frozen_layers = {"none": 0, "embeddings": 0, "first_n": layers, "head_only": n_layers}[mode]

    frozen: list[torch.nn.Parameter] = [] if mode == "none" else list(part.embeddings)
    for layer in part.layers[:frozen_layers]:
        frozen += layer
    if frozen_layers == n_layers:
        frozen += part.shared
    frozen_ids = {id(p) for p in frozen}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen_ids)
        if id(p) in frozen_ids:
            p.grad = None
    counts = count_parameters(model)
    return {
        "total": counts["total"],
        "trainable": counts["trainable"],
        "frozen_layers": frozen_layers,
        "encoder_layers": n_layers,
    }


class GradualUnfreezing(TrainerCallback):
    """Train the head first, then unfreeze one more encoder layer from the top each epoch (ULMFiT style).

    Epoch 1 trains the head and the top layer, epoch 2 the top two, ...; the embeddings stay frozen. Resumed
    runs pick up the right depth from ``state.epoch``.

    Trainer's default optimizer holds only parameters with ``requires_grad`` when it is built, which happens
    inside ``train()`` just before ``on_train_begin``. So do NOT freeze the model before building the Trainer:
    this callback freezes in ``on_train_begin``, after the optimizer was built over all parameters, and later
    unfreezing only flips ``requires_grad``. Frozen parameters keep ``grad=None`` and AdamW skips them (no
    update, no weight decay, no state) until they unfreeze. Later layers join at the scheduler's current LR.
    Under DDP, set ``ddp_find_unused_parameters=True``: the frozen parameters were wrapped as trainable.
    """

    def __init__(self) -> None:
        self.unfrozen_layers = 0

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: PreTrainedModel | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        if model is None:
            raise RuntimeError("GradualUnfreezing needs the Trainer's model")
        if optimizer is not None:
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            missing = [name for name, p in model.named_parameters() if id(p) not in held]
            if missing:
                raise RuntimeError(
                    f"GradualUnfreezing: the optimizer lacks {len(missing)} parameters (e.g. {missing[0]}), "
                    "so they could never train once unfrozen; build the Trainer on an unfrozen model"
                )
        apply_freezing(model, "head_only")
        self.unfrozen_layers = 0

    def on_epoch_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: PreTrainedModel | None = None,
        **kwargs: Any,
    ) -> None:
        if model is None:
            return
        n_layers = len(encoder_parts(model)[2])
        epochs_done = int((state.epoch or 0.0) + 1e-6)  # 0.0 before the first epoch, 1.0 after it, ...
        self.unfrozen_layers = min(n_layers, epochs_done + 1)
        counts = apply_freezing(model, "first_n", n_layers - self.unfrozen_layers)
        log.info(
            "gradual unfreezing: epoch %d trains the top %d of %d encoder layers (%d parameters)",
            epochs_done + 1,
            self.unfrozen_layers,
            n_layers,
            counts["trainable"],
        )
