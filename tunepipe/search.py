"""Hyperparameter search: an Optuna study over train.* values, trained on data/tokenized.

Not a DVC stage: a study is open-ended and resumable (its storage is the record), and only its
outcome, the best values, goes back into params.yaml (`apply_best`), where `dvc repro` picks it up.
Several workers may share one storage; each finished trial's model is deleted unless it is the
study's best so far, which replaces search/best-model, so the disk holds one model at most.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import shutil
import time
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml as pyyaml
from optuna.trial import FrozenTrial, TrialState

from tunepipe import params as params_mod
from tunepipe import paths
from tunepipe.errors import PipelineError
from tunepipe.io import read_json, write_json, write_text
from tunepipe.params import Params, TrainParams

SEARCH = Path("search")
TRIALS_DIR = SEARCH / "trials"
BEST_MODEL = SEARCH / "best-model"
TRIALS_CSV = SEARCH / "trials.csv"
BEST_JSON = SEARCH / "best.json"
MARKER = "tunepipe_search.json"  # inside best-model: which trial it is
# A trial whose worker stopped beating for GRACE_PERIOD seconds (killed, node lost) is failed.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 60
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RANGE_KEYS = {"low", "high", "log", "step"}
GRID_POINT = "tunepipe_grid_point"  # system attr: the values a grid trial evaluates


# --- the search space -------------------------------------------------------------------------


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainParams)


def _coerce(name: str, value: Any, where: str) -> Any:
    """A value as train.<name> would hold it (ints for int fields), or a PipelineError at `where`."""
    value = params_mod._check(value, _field_types()[name], where)
    params_mod.check_train_value(name, value, where)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_space(space: Mapping[str, Any], sampler: str = "tpe") -> None:
    """Fail on the first malformed entry, naming search.space.<name>, before any training starts."""
    if not space:
        raise PipelineError("params.yaml: search.space is empty; name the train.* values to search")
    types = _field_types()
    for name, spec in space.items():
        where = f"params.yaml: search.space.{name}"
        if name not in types:
            raise PipelineError(f"{where}: not a train.* parameter")
        if isinstance(spec, list):
            if not spec:
                raise PipelineError(f"{where}: an empty list; give at least one value")
            for i, value in enumerate(spec):
                if value is not None and not isinstance(value, str | int | float | bool):
                    raise PipelineError(f"{where}[{i}]: {value!r} is not a scalar (number, string, bool)")
                _coerce(name, value, f"{where}[{i}]")
            if len(set(map(repr, spec))) != len(spec):
                raise PipelineError(f"{where}: a value is listed twice")
        elif isinstance(spec, Mapping):
            if sampler == "grid":
                raise PipelineError(
                    f"{where}: the grid sampler needs a list of values, not a range; "
                    "list the points or use sampler: tpe"
                )
            unknown = sorted(set(spec) - RANGE_KEYS)
            if unknown or not {"low", "high"} <= set(spec):
                raise PipelineError(
                    f"{where}: a range is {{low, high}} with optional log and step"
                    + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "")
                )
            low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
            if not all(_is_number(v) for v in (low, high)) or (step is not None and not _is_number(step)):
                raise PipelineError(f"{where}: low, high and step must be numbers")
            if not isinstance(log, bool):
                raise PipelineError(f"{where}.log: expected true or false, got {log!r}")
            if low > high:
                raise PipelineError(f"{where}: low {low} is above high {high}")
            if log and (low <= 0 or step is not None):
                raise PipelineError(f"{where}: a log range needs low > 0 and no step")
            if step is not None and step <= 0:
                raise PipelineError(f"{where}.step: must be positive, got {step}")
            for key in ("low", "high"):
                _coerce(name, spec[key], f"{where}.{key}")
        else:
            raise PipelineError(
                f"{where}: expected a list of values or a range {{low, high, log, step}}, got {spec!r}"
            )


def _is_int_range(spec: Mapping[str, Any]) -> bool:
    bounds = [spec["low"], spec["high"]] + ([spec["step"]] if spec.get("step") is not None else [])
    return all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)


def suggest(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's train.* values: a list is a categorical choice, a mapping a range (int when its
    bounds are ints). Values come back typed as the train field (e.g. epochs as float)."""
    check_space(space)
    values = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            value = trial.suggest_categorical(name, spec)
        elif _is_int_range(spec):
            value = trial.suggest_int(
                name, spec["low"], spec["high"], step=spec.get("step") or 1, log=spec.get("log", False)
            )
        else:
            value = trial.suggest_float(
                name, spec["low"], spec["high"], step=spec.get("step"), log=spec.get("log", False)
            )
        values[name] = _coerce(name, value, f"search.space.{name}")
    return values


# --- the study --------------------------------------------------------------------------------


class _Grid(optuna.samplers.GridSampler):
    """GridSampler where a point counts as done only once a trial there is COMPLETE or PRUNED.

    Optuna's own counts a FAILed trial (an error, or a killed worker's trial once its heartbeat
    went stale) as visited, so a resumed study would never revisit that point. It also names points
    by their index in its seed-shuffled list, so resuming with another search.seed would repeat
    finished points; here points are matched by their values.
    """

    def __init__(self, space: Mapping[str, list[Any]], seed: int) -> None:
        super().__init__(space, seed=seed)
        self.names = sorted(space)
        self.points = [tuple(point) for point in self._all_grids]  # seeded order, names sorted

    def status(self, study: optuna.Study) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        """(points with a COMPLETE/PRUNED trial, points a RUNNING or WAITING trial holds)."""
        done, taken = set(), set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.state in FINISHED and set(t.params) == set(self.names):
                done.add(tuple(t.params[n] for n in self.names))
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                point = t.system_attrs.get(GRID_POINT)
                if point is not None:
                    taken.add(tuple(point))
                elif set(t.params) == set(self.names):
                    taken.add(tuple(t.params[n] for n in self.names))
        return done & set(self.points), taken & set(self.points)

    def pending(self, study: optuna.Study) -> list[tuple[Any, ...]]:
        """Points nobody has finished nor is running, in the seeded order."""
        done, taken = self.status(study)
        return [pt for pt in self.points if pt not in done and pt not in taken]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return  # a retried or enqueued trial brings its own point
        todo = self.pending(study)
        if not todo:  # another worker took the last point meanwhile: evaluate an unfinished one
            done, _ = self.status(study)
            todo = [pt for pt in self.points if pt not in done] or self.points
        point = todo[0]
        storage = study._storage
        storage.set_trial_system_attr(trial._trial_id, GRID_POINT, list(point))
        storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        storage.set_trial_system_attr(trial._trial_id, "grid_id", self.points.index(point))

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        """run_search decides when the grid is done (Optuna's would stop on failed points too)."""


class _TPE(optuna.samplers.TPESampler):
    """TPE whose random state is reseeded from (seed, trial number) before every trial.

    A plain seeded TPESampler restarts its random stream in every process: a resumed study (or a
    second worker) would draw the same startup points as the first run did. Trial numbers are
    unique in a study, so each trial gets its own, still reproducible, stream.
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.base_seed = seed

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = (self.base_seed + trial.number) % 2**32
        with contextlib.suppress(AttributeError):  # private in Optuna 5.0; harmless if renamed
            self._rng.rng.seed(seed)
            self._random_sampler._rng.rng.seed(seed)
        super().before_trial(study, trial)


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
    from tasks.tokenize import read_info
    from tunepipe.metrics import metric_names

    data = root / paths.TOKENIZED
    info = read_info(data) if (data / "labels.json").exists() else {}
    scheme = info.get("tag_scheme") or "none"
    if p.search.metric is None:
        from tasks.train import best_metric

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
    direction = "minimize" if metric.endswith("loss") else "maximize"
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
        _Grid(s.space, seed=s.seed) if s.sampler == "grid" else _TPE(seed=s.seed)
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
    return Path(root) / TRIALS_DIR / f"trial-{number}"


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
    train = dataclasses.replace(p.train, **{**values, "metric_for_best_model": metric})
    return dataclasses.replace(p, train=train)


def make_objective(p: Params, root: Path, metric: str) -> Callable[[optuna.Trial], float]:
    """Train one trial under root/search/trials/trial-<n>; returns its best validation metric."""
    root = Path(root).resolve()

    def objective(trial: optuna.Trial) -> float:
        from tasks.train import train

        values = suggest(trial, p.search.space)
        out_dir = trial_dir(root, trial.number)
        shutil.rmtree(out_dir, ignore_errors=True)  # a retried trial number starts clean
        started = time.perf_counter()
        try:
            report = train(
                trial_params(p, values, metric),
                root / paths.TOKENIZED,
                callbacks=(pruning_callback(trial, metric),),
                out_dir=out_dir,
            )
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)  # pruned or failed: no model to keep
            raise
        finally:
            trial.set_user_attr("duration_s", round(time.perf_counter() - started, 1))
        value = report["best_metric"].get(metric)
        for key in ("epochs_run", "global_step", "stopped_early"):
            trial.set_user_attr(key, report[key])
        if value is None or (isinstance(value, float) and math.isnan(value)):
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
                _replace_dir(model, root / BEST_MODEL)
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
    folder = Path(root) / TRIALS_DIR
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
        print(
            f"search: trial {trial.number} {trial.state.name}{value} {trial.params} "
            f"({trial.user_attrs.get('duration_s', '?')} s)"
        )

    return callback


# --- running and reporting --------------------------------------------------------------------


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
    marker_file = Path(root) / BEST_MODEL / MARKER
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
        "best_model": str(BEST_MODEL) if holds_best else None,
        "trials": _counts(study),
    }


def _todo(study: optuna.Study, target: int) -> int:
    """How many more trials this worker should start now."""
    if isinstance(study.sampler, _Grid):
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


def run_search(p: Params, root: Path, trials: int | None = None) -> dict[str, Any]:
    """Run the study to `trials` finished trials in all (default search.trials; grid: also at most
    every point once), write search/trials.csv and search/best.json, and return the summary.

    A resumed study only adds what is missing: finished (COMPLETE or PRUNED) trials count, failed
    ones and those of a killed worker do not, so their grid points are evaluated again.
    """
    root = Path(root).resolve()
    if not (root / paths.TOKENIZED / "labels.json").exists():
        raise PipelineError(f"{root / paths.TOKENIZED}: no tokenized data; run `dvc repro tokenize` first")
    target = p.search.trials if trials is None else trials
    if target < 0:
        raise PipelineError(f"search: trials must be 0 or more, got {target}")
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
        while _todo(study, target) > 0:
            study.optimize(objective, n_trials=1, callbacks=callbacks)
    result = summary(study, p, root)
    write_text(root / TRIALS_CSV, trials_table(study).to_csv(index=False))
    write_json(root / BEST_JSON, result)
    return result


# --- applying the outcome ---------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    """Equal as params values: floats within rounding, otherwise equal and of one type."""
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b and type(a) is type(b)


def _yaml_float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    mantissa, _, exponent = repr(value).partition("e")
    mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
    return f"{mantissa}e{int(exponent):+d}" if exponent else mantissa


def apply_best(root: Path, best_params: Mapping[str, Any]) -> list[str]:
    """Write the best values into params.yaml's train: section, keeping its comments and layout;
    returns the changed keys (train.<name>) and marks search/best.json applied."""
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    class Representer(RoundTripRepresenter):
        """ruamel writes None as an empty value and 3e-05 without a dot, which PyYAML (params.read,
        DVC) reads as a string: write null and 3.0e-5, as params.yaml does. A subclass, so that
        ruamel's shared representer stays as it was."""

    Representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    Representer.add_representer(
        float, lambda rep, value: rep.represent_scalar("tag:yaml.org,2002:float", _yaml_float(value))
    )
    root = Path(root)
    path = root / paths.PARAMS
    yaml = YAML()  # round-trip: comments, key order and flow style survive
    yaml.Representer = Representer
    yaml.preserve_quotes = True
    yaml.width = 4096
    try:
        data = yaml.load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("train"), Mapping):
        raise PipelineError(f"{path}: no train: section to write the best values into")
    changed = []
    for name, value in best_params.items():
        if name not in _field_types():
            raise PipelineError(f"search: best params: {name} is not a train.* parameter")
        _coerce(name, value, f"search: best params: {name}")  # written as the trial had it (epochs: 2)
        if name not in data["train"] or not same_value(data["train"][name], value):
            data["train"][name] = value
            changed.append(f"train.{name}")
    if changed:
        out = io.StringIO()
        yaml.dump(data, out)
        params_mod.parse(pyyaml.safe_load(out.getvalue()) or {}, str(path))  # never write a broken file
        write_text(path, out.getvalue())
    best_file = root / BEST_JSON
    if best_file.exists():
        best = read_json(best_file)
        if best.get("best_params") == dict(best_params):
            write_json(best_file, best | {"applied": True})
    return changed
