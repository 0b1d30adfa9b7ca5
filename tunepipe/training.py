"""The train stage as a function: fine-tune with transformers.Trainer, save a save_pretrained
model directory, and report what happened (see tunepipe/checkpoints.py for resume)."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tunepipe import adapters, assets, catalog, launch, model_card, step_times
from tunepipe.checkpoints import NOTE as CHECKPOINTS_NOTE
from tunepipe.checkpoints import fingerprint, prepare_run
from tunepipe.checkpoints import folder as checkpoints_folder
from tunepipe.devices import asks_cpu, choose_device, cpu_auto_precision
from tunepipe.errors import PipelineError
from tunepipe.freezing import GradualUnfreezing, apply_freezing, count_parameters
from tunepipe.io import atomic_dir, write_json, write_text
from tunepipe.metrics import EXTRA_METRICS, greater_is_better, main_metric, metric_names, trainer_metrics
from tunepipe.params import Params
from tunepipe.pretrained import load_tokenizer

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


class Diverged(PipelineError):
    """The training loss, a validation metric or a weight became NaN or infinite: the run diverged
    and nothing it made may be saved (a search prunes the trial instead of failing the study)."""


ADVICE = "lower train.learning_rate (or use precision fp32/bf16 instead of fp16) and run train again"


def finite_guard() -> Any:
    """A TrainerCallback that stops training at the first NaN or infinite loss or validation metric.

    It raises, so neither this step's checkpoint nor a best model is saved; Trainer's own
    logging_nan_inf_filter, which would average such a loss away, is off (training_arguments).
    Every rank logs the same (gathered) loss, so under DDP all ranks stop at the same step."""
    from transformers import TrainerCallback

    class StopOnNonFinite(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            loss = (logs or {}).get("loss")
            if isinstance(loss, int | float) and not math.isfinite(loss):
                raise Diverged(
                    f"train: the training loss is {loss} at step {state.global_step} "
                    f"(epoch {state.epoch or 0:.2f}): training diverged and no model was saved; {ADVICE}"
                )

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
        ) -> None:
            bad = {
                k: v
                for k, v in (metrics or {}).items()
                if isinstance(v, int | float)
                and not k.endswith(("runtime", "per_second"))
                and not math.isfinite(v)
            }
            if bad:
                shown = ", ".join(f"{k} {v}" for k, v in bad.items())
                raise Diverged(
                    f"train: validation at step {state.global_step} gave {shown}: training diverged "
                    f"and no model was saved; {ADVICE}"
                )

    return StopOnNonFinite()


def nonfinite_weights(model: Any) -> list[str]:
    """Names of the parameters holding a NaN or infinite value (none in a model fit to save)."""
    import torch

    return [name for name, w in model.named_parameters() if not bool(torch.isfinite(w).all())]


def build_model(p: Params, labels: list[str]) -> Any:
    """A pre-trained encoder with a fresh head for the task; label names go into its config so
    that anything loading the saved model predicts names, not ids (and the text columns, that
    predict knows which column to read).

    problem_type is set here, not left to the head's first forward pass with labels (which sets it
    on sequence classifiers): a run resumed at its very end makes no such pass, and its saved
    config.json would differ from an uninterrupted run's. Token classifiers never set it.
    """
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    head: dict[str, Any] = {"num_labels": len(labels), "id2label": dict(enumerate(labels))}
    head["label2id"] = {name: i for i, name in enumerate(labels)}
    if p.task == "sequence_classification":
        head["problem_type"] = "single_label_classification"
    if p.task == "regression":
        head = {
            "num_labels": 1,
            "problem_type": "regression",
            "id2label": {0: "score"},
            "label2id": {"score": 0},
        }
    cls = (
        AutoModelForTokenClassification
        if p.task == "token_classification"
        else AutoModelForSequenceClassification
    )
    with assets.quiet_load_report():  # it would list the fresh head as newly initialised
        model = cls.from_pretrained(
            assets.resolve_model(p.model.name, p.model.trust_remote_code, p.model.revision),
            revision=p.model.revision,
            trust_remote_code=p.model.trust_remote_code,
            use_safetensors=True,
            ignore_mismatched_sizes=True,  # a checkpoint with another head size gets a fresh head
            **head,
        )
    # The input columns it learns from: `tunepipe predict --model <folder>` reads its default
    # text column here, so a shipped model folder needs no params.yaml.
    columns = p.load.columns
    model.config.text_columns = [columns.text] + ([columns.text_pair] if columns.text_pair else [])
    return model


def by_length(ds: Any) -> Any:
    """The evaluation rows shortest first: Trainer batches them in order, so each batch pads to
    a length close to its own (the scores do not depend on the order)."""
    import numpy as np

    return ds.select(np.argsort([len(ids) for ids in ds["input_ids"]], kind="stable"))


def validation_sample(ds: Any, limit: int | None, seed: int) -> Any:
    """The validation rows evaluated during training: all, or a fixed sample of `limit` of them.

    On a large validation split each in-training evaluation can cost more than the steps between
    two; a seeded sample chooses the checkpoint at a fraction of that, the same rows at every
    evaluation and in every run (a resumed run too). The evaluate stage scores every row."""
    if not limit or len(ds) <= limit:
        return ds
    return ds.shuffle(seed=seed).select(range(limit))


def trained_length(info: dict[str, Any], data_dir: Path) -> int:
    """The length tokenize cut every example at (labels.json): the saved model keeps it."""
    length = info.get("max_length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise PipelineError(
            f"{data_dir}/labels.json: max_length is {length!r}, expected a positive integer; "
            "run `dvc repro tokenize`"
        )
    return length


def best_metric(p: Params, scheme: str | None) -> str:
    """train.metric_for_best_model, or the task's main metric (regression: pearson, NER: f1)."""
    metric = p.train.metric_for_best_model or main_metric(p.task, scheme or "none")
    known = [*metric_names(p.task, scheme or "none"), "loss"]
    if metric not in known:
        raise PipelineError(
            f"params.yaml: train.metric_for_best_model {metric!r} is not reported for this task; "
            f"choose one of {', '.join(known)}"
        )
    return metric


def balanced_weights(label_ids: list[Any], num_labels: int) -> list[float]:
    """Inverse-frequency class weights from the training labels (token tasks: every labelled word),
    as sklearn's compute_class_weight("balanced"); a class absent from train gets weight 0."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    flat = np.concatenate([np.ravel(np.asarray(x)) for x in label_ids]) if label_ids else np.array([])
    flat = flat[flat != -100].astype(int)
    present = np.unique(flat)
    weights = np.zeros(num_labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=flat)
    return weights.round(6).tolist()


def in_order_evaluation(base: type) -> type:
    """`base` evaluating its validation rows in the order given: by_length's, shortest first.

    Under train_sampling_strategy="group_by_length" Trainer (transformers 5) batches evaluation
    rows with a LengthGroupedSampler too: on a split of some hundred rows, random groups of one
    batch each, every batch padded to its longest row. That undid by_length's order and took an
    evaluation of the default validation split about twice as long. Under DDP too: accelerate
    shards the batches of whatever sampler Trainer gives (batch i to process i mod N), so each
    process gets sorted batches and the gathered predictions keep the rows' order."""
    from torch.utils.data import SequentialSampler

    class InOrderEvaluation(base):  # type: ignore[misc, valid-type]
        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            if eval_dataset is None:
                return super()._get_eval_sampler(eval_dataset)
            return SequentialSampler(eval_dataset)

    return InOrderEvaluation


def weighted_trainer(weights: list[float]) -> type:
    """A Trainer whose cross-entropy weighs each class (ids -100 ignored, as in the model's own loss)."""
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            weight = torch.tensor(weights, dtype=logits.dtype, device=logits.device)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), weight=weight, ignore_index=-100
            )
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


def global_batch_size(t: Any, world_size: int) -> int:
    """Examples per optimizer step: per-device batch x processes in all x accumulation steps."""
    return t.batch_size * world_size * t.gradient_accumulation_steps


def ddp_backend(world_size: int, device: dict[str, Any]) -> str | None:
    """Several processes (tunepipe/launch.py): gloo on CPU; on CUDA, Trainer's choice (NCCL)."""
    return "gloo" if world_size > 1 and device["device"] == "cpu" else None


def training_arguments(
    p: Params,
    out_dir: Path,
    n_train: int,
    device: dict[str, Any],
    metric: str = "accuracy",
    world_size: int = 1,
) -> Any:
    from transformers import TrainingArguments

    t = p.train
    steps_per_epoch = max(1, math.ceil(n_train / global_batch_size(t, world_size)))
    eval_steps = max(1, steps_per_epoch // max(1, t.evaluations_per_epoch))
    return TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=t.epochs,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,  # with load_best_model_at_end the best checkpoint is always kept
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=greater_is_better(metric),  # EarlyStoppingCallback follows it too
        # Every step's loss goes into the trainer state (kept in each checkpoint): the loss curve
        # averages train.logging_steps of them (live_points), the same after a resume.
        logging_steps=1,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        use_cpu=device["device"] == "cpu",
        bf16=device["precision"] == "bf16",
        fp16=device["precision"] == "fp16",
        report_to="none",
        # A NaN or infinite loss must reach finite_guard: left on, Trainer logs the average of the
        # earlier losses in its place and drops non-finite evaluation losses from eval_loss.
        logging_nan_inf_filter=False,
        disable_tqdm=False,
        ddp_backend=ddp_backend(world_size, device),
        ddp_timeout=t.ddp_timeout,
    )


def loss_rows(log_history: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """The loss curve: at each multiple of `every` steps, the mean loss of the steps since the last.

    Computed from the per-step losses in the trainer state rather than taken from Trainer's own
    log lines, whose first average after a resume covers only the steps since the checkpoint.
    """
    per_step = {e["step"]: e for e in log_history if "loss" in e}
    rows = []
    for step in range(every, max(per_step, default=0) + 1, every):
        window = [per_step[s] for s in range(step - every + 1, step + 1) if s in per_step]
        if window:
            mean = sum(e["loss"] for e in window) / len(window)
            rows.append({"step": step, "epoch": round(window[-1].get("epoch", 0), 4), "loss": mean})
    return rows


def eval_rows(
    log_history: list[dict[str, Any]], metrics: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The validation curve and its columns: step, epoch, eval_loss, then the task's metrics in
    their fixed order (a resumed run's history comes back from JSON with its keys sorted)."""
    rows = [
        {"step": e["step"], "epoch": round(e.get("epoch", 0), 4)}
        | {
            k: v
            for k, v in e.items()
            if k.startswith("eval_") and isinstance(v, float) and not k.endswith(("runtime", "per_second"))
        }
        for e in log_history
        if "eval_loss" in e
    ]
    known = ["step", "epoch", "eval_loss", *(f"eval_{m}" for m in metrics)]
    others = sorted({k for row in rows for k in row} - set(known))
    return rows, [c for c in known if any(c in row for row in rows)] + others


def live_points(
    log_history: list[dict[str, Any]], every: int, metrics: list[str]
) -> list[tuple[int, dict[str, float]]]:
    """What DVCLive logs for a log history, in step order: train/loss every `every` steps (the mean
    of loss_rows) and eval/loss, eval/<metric> at each evaluation (eval_rows' columns, in order)."""
    points = [(r["step"], {"train/loss": r["loss"]}) for r in loss_rows(log_history, every)]
    rows, columns = eval_rows(log_history, metrics)
    points += [
        (
            r["step"],
            {f"eval/{c.removeprefix('eval_')}": r[c] for c in columns if c.startswith("eval_") and c in r},
        )
        for r in rows
    ]
    return sorted(points, key=lambda point: point[0])  # stable: the loss before an evaluation's


def live_logger(every: int, metrics: list[str], out: Path = catalog.LIVE) -> Any:
    """A TrainerCallback writing the curves through DVCLive (`out`: metrics.json, plots/metrics/),
    as training goes, so `dvc plots`, the VS Code extension and Studio follow a run.

    The curves depend only on the trainer's log history: the same for a resumed run as for an
    uninterrupted one (the folder is rewritten from the restored history at the first log, as
    Trainer restores it after on_train_begin), with no timestamps, so DVC's hashes of them stay
    the same between identical runs. No experiment is saved (`dvc exp run` saves its own) and
    no dvc.yaml written: the project's dvc.yaml declares the outputs and plots.
    """
    from transformers import TrainerCallback

    class LiveCurves(TrainerCallback):
        live: Any = None

        def _log(self, points: list[tuple[int, dict[str, float]]]) -> None:
            for step, values in points:
                self.live.step = step
                for name, value in values.items():
                    self.live.log_metric(name, value)
                self.live.next_step()  # metrics.json, and the VS Code extension's step signal

        def _start(self, state: Any) -> None:
            from dvclive import Live

            # resume=False: DVCLive empties its folder, written again from the whole history
            self.live = Live(dir=str(out), resume=False, save_dvc_exp=False, dvcyaml=False, report=None)
            self._log(live_points(state.log_history, every, metrics))

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            if self.live is None:
                self._start(state)
                return
            entry, step = state.log_history[-1], state.global_step
            if "eval_loss" in entry:
                history = [entry]
            elif "loss" in entry and step % every == 0:
                history = []
                for e in reversed(state.log_history):
                    if e.get("step", 0) <= step - every:
                        break
                    history.append(e)
                history.reverse()
            else:
                return
            self._log([point for point in live_points(history, every, metrics) if point[0] == step])

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            if self.live is None:
                self._start(state)
            self.live.end()

    return LiveCurves()


def quiet_progress(every: int) -> Any:
    """Trainer's progress bar, printing a loss line every train.logging_steps steps (the curve's
    mean) rather than one per step; evaluations print as before."""
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                if state.global_step % every:
                    return
                recent = []
                for e in reversed(state.log_history):
                    if e.get("step", 0) <= state.global_step - every:
                        break
                    recent.append(e)
                rows = loss_rows(recent[::-1], every)
                logs = {**logs, "loss": rows[-1]["loss"]} if rows else logs
            super().on_log(args, state, control, logs=logs, **kwargs)

    return QuietProgress()


def train(
    p: Params,
    data_dir: Path = catalog.TOKENIZED,
    callbacks: tuple[Any, ...] = (),
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune and save the model; returns the training report.

    `callbacks` are extra TrainerCallbacks (a search's pruning, tests' observers). `out_dir` is a
    hyperparameter-search trial's folder: model/ and checkpoints/ go there and no report, curve
    or DVC output is touched.
    """
    model_dir = out_dir / "model" if out_dir else catalog.MODEL
    adapter_dir = catalog.ADAPTER
    checkpoints = out_dir / "checkpoints" if out_dir else checkpoints_folder()
    import torch
    from transformers import (
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
    )

    t = p.train
    device = choose_device(t, p.task)
    info = catalog.read_info(data_dir)
    if info.get("task", "sequence_classification") != p.task:
        raise PipelineError(f"data/tokenized was made for task {info.get('task')!r}, params say {p.task!r}")
    labels, scheme = info["labels"], info.get("tag_scheme")
    metric = best_metric(p, scheme)
    dsd = catalog.read_tokenized(data_dir, catalog.TRAINING_SPLITS)
    train_ds = dsd["train"].shuffle(seed=t.seed)
    if t.max_train_samples:
        train_ds = train_ds.select(range(min(t.max_train_samples, len(train_ds))))
    columns = [c for c in train_ds.column_names if c in MODEL_INPUTS]
    validation = dsd["validation"].select_columns(columns)
    eval_ds = by_length(validation_sample(validation, t.eval_max_samples, t.seed))
    train_ds = train_ds.select_columns(columns)

    world = launch.world_size()
    main = launch.is_main()
    torch.manual_seed(t.seed)
    tok = load_tokenizer(p)
    # The saved tokenizer carries the length the model was trained (and is evaluated) with, so
    # `tunepipe predict` and transformers.pipeline cut long texts where evaluate did.
    tok.model_max_length = trained_length(info, data_dir)
    model = build_model(p, labels)
    collator = (
        DataCollatorForTokenClassification if p.task == "token_classification" else DataCollatorWithPadding
    )
    callbacks = (*callbacks, GradualUnfreezing()) if t.freeze == "gradual" else callbacks
    try:
        # gradual: the callback freezes at train begin, after the optimizer holds every weight
        apply_freezing(model, "none" if t.freeze == "gradual" else t.freeze, t.freeze_layers)
    except ValueError as exc:
        raise PipelineError(f"params.yaml: train.freeze {t.freeze}: {exc}") from None
    if t.gradient_checkpointing:
        adapters.enable_gradient_checkpointing(model)
    targets = None
    if t.adapter == "lora":
        model, targets = adapters.add_lora(model, p)
    params_count = count_parameters(model)
    # After the model is built: a params mistake it reveals (LoRA's target modules) leaves no
    # checkpoint folder behind.
    if os.environ.get(launch.LAUNCHED):  # the launching process prepared the checkpoints
        run_dir = checkpoints / fingerprint(p, data_dir, world_size=world)
        resume = os.environ.get(launch.RESUME) or None
    else:
        run_dir, resume = prepare_run(p, data_dir, checkpoints, world)
    if resume and main:
        print(f"train: resuming from {resume}")
    if main:
        print(
            f"train: {device['device']} {device['precision']}, {params_count['trainable']:,} of "
            f"{params_count['total']:,} parameters trainable, {len(train_ds)} examples, "
            f"global batch {global_batch_size(t, world)} ({t.batch_size} x {world} processes x "
            f"{t.gradient_accumulation_steps} accumulation steps)"
            + (f", LoRA r={t.lora.r} on {', '.join(targets)}" if targets else "")
            + (", gradient checkpointing" if t.gradient_checkpointing else "")
        )
        if len(eval_ds) < len(validation):
            print(
                f"train: evaluating on a fixed sample of {len(eval_ds):,} of the {len(validation):,} "
                "validation rows (train.eval_max_samples); the evaluate stage scores every row"
            )
    trainer_class, weights_by_label = Trainer, None
    if t.class_weights:
        if p.task == "regression":
            raise PipelineError("params.yaml: train.class_weights applies to classification, not regression")
        weights = balanced_weights(list(train_ds["labels"]), len(labels))
        weights_by_label = dict(zip(labels, weights, strict=True))
        trainer_class = weighted_trainer(weights)
    trainer = in_order_evaluation(trainer_class)(
        model=model,
        args=training_arguments(p, run_dir, len(train_ds), device, metric, world),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tok,
        data_collator=collator(tok),
        compute_metrics=trainer_metrics(p.task, labels, [m for m in EXTRA_METRICS if m == metric], scheme),
        # finite_guard first: a NaN metric stops the run before early stopping or a search's
        # pruner reads it
        callbacks=[
            finite_guard(),
            EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold),
            *callbacks,
        ],
    )
    # The heads trained here (sequence and token classification, regression) average their loss
    # over their own batch and ignore num_items_in_batch, although their forward takes **kwargs.
    # Left at True, Trainer would multiply that mean by the number of processes under DDP and
    # skip dividing it by gradient_accumulation_steps: gradients N times too large.
    trainer.model_accepts_loss_kwargs = False
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(quiet_progress(t.logging_steps))
    if out_dir is None and main:  # a search trial logs no curves; under DDP rank 0 does
        trainer.add_callback(live_logger(t.logging_steps, metric_names(p.task, scheme or "none")))
    steps = step_times.timer()
    trainer.add_callback(steps)
    started = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=resume)
        broken = nonfinite_weights(trainer.model)
        if broken:
            raise Diverged(
                f"train: {len(broken)} weight tensors of the trained model hold NaN or infinite values "
                f"(first: {broken[0]}): training diverged and no model was saved; {ADVICE}"
            )
    except Diverged:
        # Its checkpoints would resume the same divergence: none of them is kept, and no best model.
        if main:
            shutil.rmtree(run_dir, ignore_errors=True)
        for callback in trainer.callback_handler.callbacks:  # the error line starts a line of its own
            for name in ("prediction_bar", "training_bar"):
                bar = getattr(callback, name, None)
                if bar is not None:
                    bar.close()
        raise
    state = trainer.state
    if not trainer.is_world_process_zero():
        # Under DDP every rank holds the same weights and state: one (rank 0) writes them.
        return {"rank": launch.rank(), "global_step": state.global_step}
    # The same data and params give the same report, resumed or not: DVC hashes it (dvc.lock).
    report = {
        "device": device,
        "parameters": params_count,
        # LoRA's settings with the modules it adapted (None: the weights themselves trained)
        "adapter": adapters.describe(p, targets),
        "gradient_checkpointing": t.gradient_checkpointing,
        "class_weights": weights_by_label,
        "train_examples": len(train_ds),
        "validation_examples": {"evaluated": len(eval_ds), "of": len(validation)},
        "batch": {
            "per_device": t.batch_size,
            "processes": world,
            "gradient_accumulation_steps": t.gradient_accumulation_steps,
            "global": global_batch_size(t, world),
        },
        "epochs_run": round(state.epoch or 0, 4),
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "stopped_early": state.global_step < state.max_steps,
        "best_metric": {metric: state.best_metric},
        "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
    }
    saved = trainer.model
    if out_dir is None:  # a stage output, LoRA or not (a search trial keeps its merged model only)
        with atomic_dir(adapter_dir, owned=True) as tmp:
            if adapters.is_adapted(saved):
                adapters.save_adapter(saved, tmp, p.model.name)
            else:
                write_text(tmp / "README.txt", adapters.NO_ADAPTER)
    if adapters.is_adapted(saved):
        saved = adapters.merged(saved)
    with atomic_dir(model_dir, owned=True) as tmp:  # a stage output (or a search trial's)
        if saved is trainer.model:
            trainer.save_model(str(tmp))
        else:  # the adapters merged in: a plain transformers folder, as save_model writes one
            saved.save_pretrained(str(tmp), safe_serialization=True)
            tok.save_pretrained(str(tmp))
        # A pickle holding run-specific paths: not needed to load the model, and it would make
        # the model's hash differ between identical runs. The params are in the lineage record.
        (tmp / "training_args.bin").unlink(missing_ok=True)
        if out_dir is None:  # the pipeline's model (a search trial's has no card)
            splits = {
                s: model_card.split_facts(dsd[s], catalog.tokenized_split(s, data_dir), info["max_length"])
                for s in catalog.TRAINING_SPLITS
            }
            write_text(tmp / model_card.README, model_card.training_card(p, info, splits, report))
    # How this run went: differs between identical runs, so it stays out of DVC's hashes.
    run = {
        "resumed_from": Path(resume).name if resume else None,
        "train_runtime_s": round(time.perf_counter() - started, 1),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        # how steady: per-step wall times of this process (a stall shows as steps over 3x the median)
        "step_times": step_times.summary(steps.steps, steps.pauses, steps.tokens, steps.evaluations),
        # what `precision: auto` chose on this CPU, and why (devices.cpu_auto_precision)
        "cpu_auto_precision": (
            cpu_auto_precision() if asks_cpu(device["device"], t.precision, p.task) else None
        ),
        # this process's (rank 0's) peak; null on CPU
        "peak_gpu_memory_mib": (
            round(torch.cuda.max_memory_allocated() / 2**20) if device["device"] == "cuda" else None
        ),
    }
    shutil.rmtree(run_dir, ignore_errors=True)  # finished: the model is saved and DVC-cached
    if out_dir is None:
        write_json(catalog.TRAIN_REPORT, report)
        write_json(catalog.TRAIN_RUN, run)
        write_text(checkpoints / "README.txt", CHECKPOINTS_NOTE)
    return report | run


def run_stage(p: Params, module: str) -> dict[str, Any] | None:
    """The train stage: in this process for a world of one; otherwise the checkpoints are prepared
    here, once, and `module` runs again under torchrun (tunepipe/launch.py). Returns the report
    where this process wrote it (None on other ranks and in a process that launched the run)."""
    world = launch.planned_world_size(p.train)
    if not launch.under_launcher() and world > 1:
        _, resume = prepare_run(p, catalog.TOKENIZED, checkpoints_folder(), world)
        launch.relaunch(p.train, module, resume)
        return None
    report = train(p)
    return report if launch.is_main() else None
