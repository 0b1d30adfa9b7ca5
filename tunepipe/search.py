"""Hyperparameter search: an Optuna study over train.* values, trained on data/tokenized.

Not a DVC stage: a study is open-ended and resumable (its storage is the record), and only its
outcome, the best values, goes back into params.yaml (tunepipe/search_apply.py), where `dvc repro`
picks it up. Several workers may share one storage; each finished trial's model is deleted unless
it is the study's best so far, which replaces search/best-model, so the disk holds one model at most.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from tunepipe import catalog, progress
from tunepipe.errors import PipelineError
from tunepipe.io import read_json, write_json, write_text
from tunepipe.metrics import greater_is_better, metric_names
from tunepipe.params import Params, check_space, with_train_values
from tunepipe.search_samplers import FINISHED, Grid, ReseededTPE
from tunepipe.search_space import suggest
from tunepipe.training import Diverged, best_metric, train

MARKER = "tunepipe_search.json"  # inside best-model: which trial it is
# A trial whose worker stopped beating for GRACE_PERIOD seconds (killed, node lost) is failed.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 60


def storage_url(p: Params, root: Path) -> str:
    """search.storage with a relative SQLite path resolved against the project root."""
    from sqlalchemy.engine import make_url

    url = make_url(p.search.storage)
    database = url.database or ""
    if url.drivername.startswith("sqlite") and database and database != ":memory:":
        path = Path(database)
        if not path.is_absolute():
            path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        url = url.set(database=str(path))
    return url.render_as_string(hide_password=False)


def shown_storage(p: Params) -> str:
    """The storage URL without its password, for reports."""
    from sqlalchemy.engine import make_url

    return make_url(p.search.storage).render_as_string(hide_password=True)


def search_metric(p: Params, root: Path) -> str:
    """search.metric, or the metric train uses to pick its best checkpoint."""
    data = root / catalog.TOKENIZED
    info = catalog.read_info(data) if catalog.has_tokenized(data) else {}
    scheme = info.get("tag_scheme") or "none"
    if p.search.metric is None:
        return best_metric(p, scheme)
    known = [*metric_names(p.task, scheme), "loss"]
    if p.search.metric not in known:
        raise PipelineError(
            f"params.yaml: search.metric {p.search.metric!r} is not reported for this task; "
            f"choose one of {', '.join(known)}"
        )
    return p.search.metric


def _stale_trial(root: Path) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        shutil.rmtree(trial_dir(root, trial.number), ignore_errors=True)
        print(f"search: trial {trial.number} lost its worker (no heartbeat for {GRACE_PERIOD} s): failed")

    return callback


def make_study(p: Params, root: Path) -> optuna.Study:
    """Create or load the study named in search:, with its sampler and pruner."""
    root = Path(root).resolve()
    s = p.search
    check_space(s.space, s.sampler)
    metric = search_metric(p, root)
    direction = "maximize" if greater_is_better(metric) else "minimize"
    url = storage_url(p, root)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            grace_period=GRACE_PERIOD,
            # Optuna 5.0's name for failed_trial_callback (deprecated since 4.9).
            heartbeat_stale_trial_callback=_stale_trial(root),
        )
    sampler: optuna.samplers.BaseSampler = (
        Grid(s.space, seed=s.seed) if s.sampler == "grid" else ReseededTPE(seed=s.seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if s.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        study_name=s.study_name,
        direction=direction,
        load_if_exists=True,
    )
    # load_if_exists ignores the direction, and values of another metric are not comparable.
    known = study.user_attrs.get("metric")
    if known is None:
        study.set_user_attr("metric", metric)
    elif known != metric or study.direction.name.lower() != direction:
        was = study.direction.name.lower()
        raise PipelineError(
            f"study {s.study_name!r} in {shown_storage(p)} optimises {known} ({was}), "
            f"params ask for {metric} ({direction}); set search.study_name to start a new study"
        )
    return study


# --- trials -----------------------------------------------------------------------------------


def trial_dir(root: Path, number: int) -> Path:
    return Path(root) / catalog.SEARCH_TRIALS / f"trial-{number}"


def pruning_callback(trial: optuna.Trial, metric: str) -> Any:
    """A TrainerCallback that reports eval_<metric> at each evaluation and prunes a poor trial."""
    from transformers import TrainerCallback

    class OptunaPruning(TrainerCallback):
        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
        ) -> None:
            key = f"eval_{metric}"
            if not metrics or key not in metrics:
                raise PipelineError(f"search: evaluation reported no {key} (got {', '.join(metrics or [])})")
            trial.report(float(metrics[key]), state.global_step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {metrics[key]:.4f} at step {state.global_step}")

    return OptunaPruning()


def trial_params(p: Params, values: Mapping[str, Any], metric: str) -> Params:
    """Params with the trial's train.* values; checkpoints are picked by the searched metric,
    so a trial's model is the one its value describes."""
    train = with_train_values(p.train, {**values, "metric_for_best_model": metric})
    return p.model_copy(update={"train": train})


def make_objective(p: Params, root: Path, metric: str) -> Callable[[optuna.Trial], float]:
    """Train one trial under root/search/trials/trial-<n>; returns its best validation metric.

    A trial whose loss or metric turns NaN or infinite (training.Diverged: its values diverge,
    e.g. a learning rate at the top of a range) is pruned, not failed: the study goes on, the
    sampler learns to avoid that region (a pruned trial without a value ranks worst in TPE) and a
    grid point is not retried, since it would diverge again. Its reason is printed and kept in the
    trial's user attribute `diverged`."""
    root = Path(root).resolve()

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, p.search.space)
        out_dir = trial_dir(root, trial.number)
        shutil.rmtree(out_dir, ignore_errors=True)  # a retried trial number starts clean
        started = time.perf_counter()
        try:
            report = train(
                trial_params(p, values, metric),
                root / catalog.TOKENIZED,
                callbacks=(pruning_callback(trial, metric),),
                out_dir=out_dir,
            )
        except Diverged as exc:
            shutil.rmtree(out_dir, ignore_errors=True)
            reason = str(exc).removeprefix("train: ")
            trial.set_user_attr("diverged", reason)
            raise optuna.TrialPruned(reason) from None
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)  # pruned or failed: no model to keep
            raise
        finally:
            trial.set_user_attr("duration_s", round(time.perf_counter() - started, 1))
        value = report["best_metric"].get(metric)
        for key in ("epochs_run", "global_step", "stopped_early"):
            trial.set_user_attr(key, report[key])
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            shutil.rmtree(out_dir, ignore_errors=True)
            raise PipelineError(f"search: trial {trial.number} reported no {metric}")
        return float(value)

    return objective


def _is_best(study: optuna.Study, trial: FrozenTrial) -> bool:
    try:
        return study.best_trial.number == trial.number
    except ValueError:  # no COMPLETE trial
        return False


def keep_best(root: Path) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optimize callback: the study's best trial so far replaces search/best-model; every trial's
    own folder goes."""
    root = Path(root).resolve()

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        folder = trial_dir(root, trial.number)
        try:
            model = folder / "model"
            if trial.state == TrialState.COMPLETE and model.is_dir() and _is_best(study, trial):
                marker = {"trial": trial.number, "value": trial.value, "params": trial.params}
                write_json(model / MARKER, marker | {"study_name": study.study_name})
                _replace_dir(model, root / catalog.SEARCH_BEST_MODEL)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return callback


def _replace_dir(src: Path, target: Path) -> None:
    """Move src onto target: a rename on the same file system, so never a half-copied model."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    os.replace(src, target)
    shutil.rmtree(old, ignore_errors=True)


def sweep(root: Path, study: optuna.Study) -> None:
    """Remove trial folders no running trial owns (left by a killed worker)."""
    folder = Path(root) / catalog.SEARCH_TRIALS
    if not folder.is_dir():
        return
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for sub in folder.glob("trial-*"):
        number = sub.name.removeprefix("trial-")
        if not (number.isdigit() and int(number) in running):
            shutil.rmtree(sub, ignore_errors=True)


def _report_trial(metric: str) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        value = "" if trial.value is None else f" {metric} {trial.value:.4f}"
        diverged = trial.user_attrs.get("diverged")
        if diverged:  # the reason's first clause: "the training loss is nan at step 3 (epoch 0.33)"
            value += f" (diverged: {diverged.split(':')[0]})"
        print(
            f"search: trial {trial.number} {trial.state.name}{value} {trial.params} "
            f"({trial.user_attrs.get('duration_s', '?')} s)"
        )

    return callback


def _progress_line(study: optuna.Study, todo: int, metric: str, elapsed: float, ran: int) -> None:
    """Before each trial: finished trials of the target, the best value, time spent and left."""
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    best = ""
    with contextlib.suppress(ValueError):
        best = f"; best {metric} {study.best_value:.4f}"
    timing = f"; {elapsed:.0f} s, about {elapsed / ran * todo:.0f} s left" if ran else ""
    progress.step_line("search", finished, finished + todo, f"trials finished{best}{timing}")


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, duration_s, then one column per searched param."""
    trials = study.get_trials(deepcopy=False)
    names: list[str] = []
    for t in trials:
        names += [n for n in t.params if n not in names]
    rows = []
    for t in trials:
        duration = t.user_attrs.get("duration_s")
        if duration is None and t.datetime_start and t.datetime_complete:
            duration = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
        rows.append(
            {"number": t.number, "state": t.state.name, "value": t.value, "duration_s": duration}
            | {n: t.params.get(n) for n in names}
        )
    return pd.DataFrame(rows, columns=["number", "state", "value", "duration_s", *names])


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    return {k: v for k, v in counts.items() if v}


def summary(study: optuna.Study, p: Params, root: Path) -> dict[str, Any]:
    """What best.json holds."""
    best = None
    with contextlib.suppress(ValueError):
        best = study.best_trial
    marker_file = Path(root) / catalog.SEARCH_BEST_MODEL / MARKER
    marker = read_json(marker_file) if marker_file.exists() else {}
    holds_best = best is not None and marker.get("trial") == best.number
    return {
        "study_name": study.study_name,
        "storage": shown_storage(p),
        "sampler": p.search.sampler,
        "metric": study.user_attrs.get("metric"),
        "direction": study.direction.name.lower(),
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else {},
        "best_model": str(catalog.SEARCH_BEST_MODEL) if holds_best else None,
        "trials": _counts(study),
    }


def _todo(study: optuna.Study, target: int) -> int:
    """How many more trials this worker should start now."""
    if isinstance(study.sampler, Grid):
        grid = study.sampler
        done, _ = grid.status(study)
        return min(max(0, min(target, len(grid.points)) - len(done)), len(grid.pending(study)))
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    return max(0, target - finished)


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Our per-trial line replaces Optuna's INFO logging; its warnings still show."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def check_request(p: Params, trials: int | None = None) -> int:
    """The trials to finish in all; a malformed search.space or trial count fails here, before
    the data stages run (the metric waits for the tokenized data: its tag scheme decides it)."""
    check_space(p.search.space, p.search.sampler)
    target = p.search.trials if trials is None else trials
    if target < 0:
        raise PipelineError(f"search: trials must be 0 or more, got {target}")
    return target


def run_search(p: Params, root: Path, trials: int | None = None) -> dict[str, Any]:
    """Run the study to `trials` finished trials in all (default search.trials; grid: also at most
    every point once), write search/trials.csv and search/best.json, and return the summary.

    A resumed study only adds what is missing: finished (COMPLETE or PRUNED) trials count, failed
    ones and those of a killed worker do not, so their grid points are evaluated again.
    """
    root = Path(root).resolve()
    if not catalog.has_tokenized(root / catalog.TOKENIZED):
        raise PipelineError(f"{root / catalog.TOKENIZED}: no tokenized data; run `dvc repro tokenize` first")
    target = check_request(p, trials)
    study = make_study(p, root)
    metric = study.user_attrs["metric"]
    objective = make_objective(p, root, metric)
    callbacks = [keep_best(root), _report_trial(metric)]
    # Training reads relative paths (a local model.name) as `dvc repro` would: from the project root.
    with contextlib.chdir(root), _optuna_quiet():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        sweep(root, study)
        started, ran = time.perf_counter(), 0
        while (todo := _todo(study, target)) > 0:
            _progress_line(study, todo, metric, time.perf_counter() - started, ran)
            study.optimize(objective, n_trials=1, callbacks=callbacks)
            ran += 1
    result = summary(study, p, root)
    write_text(root / catalog.SEARCH_TRIALS_CSV, trials_table(study).to_csv(index=False))
    write_json(root / catalog.SEARCH_BEST, result)
    return result
