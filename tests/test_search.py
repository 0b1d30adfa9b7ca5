"""Hyperparameter search: an Optuna study over train.* values on a tiny BERT.

The data stages run once per module in-process; each test searches in its own copy of that project.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import REPO, dvc, make_project, set_params, tunepipe
from tunepipe import catalog, cli, lineage, search, search_apply, search_space
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A project whose load, validate and tokenize stages have run (in this process)."""
    root = make_project(tmp_path_factory.mktemp("search") / "project", tiny_bert)
    set_params(
        root,
        **{
            "train.epochs": 1,
            "train.evaluations_per_epoch": 2,
            "train.logging_steps": 50,
            "search.trials": 8,
            "search.pruning": False,
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("pretrained", "load", "validate", "tokenize"):
            importlib.import_module(f"tasks.{name}").main()
    return root


@pytest.fixture
def project(tokenized: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tokenized, tmp_path / "project", symlinks=True))


def configure(root: Path, **search_changes: Any) -> params_mod.Params:
    set_params(root, **{f"search.{k}": v for k, v in search_changes.items()})
    return params_mod.read(root / "params.yaml")


def load_study(p: params_mod.Params, root: Path) -> optuna.Study:
    return optuna.load_study(study_name=p.search.study_name, storage=search.storage_url(p, root))


def points(trials: list[optuna.trial.FrozenTrial], names: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(t.params[n] for n in names) for t in trials]


def assert_only_best_model(root: Path) -> None:
    assert not list((root / catalog.SEARCH_TRIALS).glob("trial-*")), "a trial folder was left behind"
    assert (root / catalog.SEARCH_BEST_MODEL / "model.safetensors").is_file()
    assert not (root / catalog.LIVE).exists(), "a trial logged curves into the project's reports"


@pytest.mark.stage
def test_grid_runs_every_point_once_and_keeps_only_the_best_model(project: Path) -> None:
    space = {"learning_rate": [1e-3, 3e-3], "epochs": [1, 2]}
    p = configure(project, sampler="grid", space=space)
    result = search.run_search(p, project)

    trials = load_study(p, project).get_trials(states=FINISHED)
    assert len(trials) == 4
    assert sorted(points(trials, ["learning_rate", "epochs"])) == [(1e-3, 1), (1e-3, 2), (3e-3, 1), (3e-3, 2)]
    table = pd.read_csv(project / catalog.SEARCH_TRIALS_CSV)
    assert len(table) == 4
    assert list(table.columns) == ["number", "state", "value", "duration_s", "learning_rate", "epochs"]
    assert (table["duration_s"] > 0).all()

    best = json.loads((project / catalog.SEARCH_BEST).read_text())
    assert best == result
    assert best["metric"] == "accuracy" and best["direction"] == "maximize"
    assert best["trials"] == {"COMPLETE": 4}
    winner = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best["best_value"] == winner.value
    by_number = {t.number: t for t in trials}
    assert best["best_params"] == by_number[best["best_trial"]].params
    assert by_number[best["best_trial"]].value == winner.value  # ties: Optuna keeps the first
    assert_only_best_model(project)
    marker = json.loads((project / catalog.SEARCH_BEST_MODEL / search.MARKER).read_text())
    assert marker["trial"] == best["best_trial"] and best["best_model"] == "search/best-model"


@pytest.mark.stage
def test_resumed_grid_skips_finished_points_and_revisits_a_lost_one(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(search, "GRACE_PERIOD", 1)
    p = configure(project, sampler="grid", space={"learning_rate": [1e-3, 2e-3, 3e-3, 4e-3]})
    search.run_search(p, project, trials=2)
    study = load_study(p, project)
    first = {t.number: t.params for t in study.get_trials(states=FINISHED)}
    assert sorted(first) == [0, 1]

    # A worker killed mid-trial: its trial stays RUNNING on a grid point and its folder stays.
    study = search.make_study(p, project)
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna: heartbeats are optimize()'s
        lost = study.ask()
    study._storage.record_heartbeat(lost._trial_id)
    (search.trial_dir(project, lost.number) / "checkpoints").mkdir(parents=True)
    time.sleep(2.5)  # past the grace period (SQLite timestamps have whole seconds)

    result = search.run_search(p, project)
    trials = load_study(p, project).get_trials()
    states = {t.number: t.state for t in trials}
    assert states[lost.number] == TrialState.FAIL
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 4
    assert sorted(points(finished, ["learning_rate"])) == [(1e-3,), (2e-3,), (3e-3,), (4e-3,)]
    assert {t.number: t.params for t in finished if t.number in first} == first  # not repeated
    assert all(t.number > lost.number for t in finished if t.number not in first)
    assert result["trials"] == {"COMPLETE": 4, "FAIL": 1}
    assert_only_best_model(project)

    # Nothing left to do: a third run starts no trial.
    search.run_search(p, project)
    assert len(load_study(p, project).get_trials()) == 5


@pytest.mark.stage
def test_two_workers_share_one_grid_study(project: Path) -> None:
    """Two processes on one storage split the grid: every point is finished, each worker ran some."""
    grid = [1e-3, 2e-3, 3e-3, 4e-3]
    p = configure(project, sampler="grid", space={"learning_rate": grid})
    search.make_study(p, project)  # as a first `tunepipe search` would; the workers load it
    code = "from tunepipe import params, search; search.run_search(params.read('params.yaml'), '.')"
    workers = [
        subprocess.Popen([sys.executable, "-c", code], cwd=project, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [re.findall(r"search: trial (\d+) COMPLETE", out) for out in outputs]
    assert all(ran), f"a worker ran no trial: {outputs}"
    finished = load_study(p, project).get_trials(states=FINISHED)
    assert {t.params["learning_rate"] for t in finished} == set(grid)
    assert sorted(int(n) for n in ran[0] + ran[1]) == sorted(t.number for t in finished)
    assert_only_best_model(project)


@pytest.mark.stage
def test_resumed_tpe_study_counts_its_finished_trials(project: Path) -> None:
    space = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}
    p = configure(project, sampler="tpe", space=space, pruning=True)
    search.run_search(p, project, trials=3)
    result = search.run_search(p, project, trials=5)
    trials = load_study(p, project).get_trials()
    assert len(trials) == 5 and all(t.state in FINISHED for t in trials)
    assert sum(result["trials"].values()) == 5
    # A resumed run draws new points, not the first run's seeded ones again.
    assert len({t.params["learning_rate"] for t in trials}) == 5
    assert all(1e-3 <= t.params["learning_rate"] <= 1e-2 for t in trials)
    assert_only_best_model(project)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


@pytest.mark.stage
def test_pruning_callback_stops_training_and_removes_the_trial_folder(project: Path) -> None:
    p = configure(project, sampler="tpe", space={"learning_rate": [3e-3]})
    study = search.make_study(p, project)
    study.pruner = AlwaysPrune()
    seen: list[bool] = []

    def objective(trial: optuna.Trial) -> float:
        try:
            return search.make_objective(p, project, "accuracy")(trial)
        finally:
            seen.append(search.trial_dir(project, trial.number).exists())

    study.optimize(objective, n_trials=1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [trial.last_step]  # pruned at the first evaluation
    assert trial.user_attrs["duration_s"] > 0
    assert seen == [False]


@pytest.mark.stage
def test_median_pruner_stops_a_trial_that_does_not_learn(project: Path) -> None:
    # learning_rate 1e-12 (0 is refused) leaves the validation loss where it starts (0.693); the
    # other two lower it to about 0.687 and 0.681 at every evaluation, so the median rule stops
    # it at its first.
    p = configure(
        project, sampler="tpe", space={"learning_rate": [1e-3, 3e-3, 1e-12]}, metric="loss", pruning=True
    )
    study = search.make_study(p, project)
    for lr in (1e-3, 3e-3, 1e-12):
        study.enqueue_trial({"learning_rate": lr})
    result = search.run_search(p, project, trials=3)
    assert result["direction"] == "minimize"
    states = {t.params["learning_rate"]: t.state for t in load_study(p, project).get_trials()}
    assert states == {1e-3: TrialState.COMPLETE, 3e-3: TrialState.COMPLETE, 1e-12: TrialState.PRUNED}
    assert result["best_params"]["learning_rate"] != 1e-12
    assert_only_best_model(project)


@pytest.mark.stage
def test_space_errors_name_the_entry(project: Path) -> None:
    with pytest.raises(PipelineError, match=r"search\.space\.learning_rate: the grid sampler needs a list"):
        params_mod.check_space({"learning_rate": {"low": 1e-5, "high": 1e-3}}, "grid")
    with pytest.raises(PipelineError, match=r"search\.space\.batch_size\[1\]: expected an integer"):
        params_mod.check_space({"batch_size": [16, 8.5]}, "tpe")
    with pytest.raises(PipelineError, match=r"search\.space\.warmup_ratio: a range is \{low, high\}"):
        params_mod.check_space({"warmup_ratio": {"low": 0.0, "hi": 0.1}}, "tpe")
    with pytest.raises(PipelineError, match=r"search\.space\.learning_rate: a log range needs low > 0"):
        params_mod.check_space({"learning_rate": {"low": 0.0, "high": 1e-3, "log": True}}, "tpe")
    with pytest.raises(PipelineError, match=r"warmup_ratio\[1\]: expected at least 0 and below 1"):
        params_mod.check_space({"warmup_ratio": [0.0, 1.5]}, "grid")
    with pytest.raises(PipelineError, match=r"search\.space\.epochs\.low: expected greater than 0"):
        params_mod.check_space({"epochs": {"low": 0, "high": 3}}, "tpe")
    with pytest.raises(PipelineError, match=r"search\.space\.epochs: an empty list"):
        params_mod.check_space({"epochs": []}, "grid")
    p = configure(project, sampler="tpe", space={"epochs": [1]})
    shutil.rmtree(project / "data/tokenized")
    with pytest.raises(PipelineError, match=r"dvc repro tokenize"):
        search.run_search(p, project)


@pytest.mark.unit
def test_suggest_types_values_as_the_train_fields() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {
        "batch_size": {"low": 8, "high": 32, "step": 8},
        "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
        "epochs": [1, 2],
        "freeze": ["none", "head_only"],
    }
    values = search_space.suggest(study.ask(), space)
    assert isinstance(values["batch_size"], int) and values["batch_size"] in (8, 16, 24, 32)
    assert isinstance(values["learning_rate"], float) and 1e-5 <= values["learning_rate"] <= 1e-3
    assert isinstance(values["epochs"], float)  # train.epochs is a float field
    assert values["freeze"] in ("none", "head_only")


@pytest.mark.unit
def test_apply_best_changes_only_the_train_values_and_keeps_comments(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_text()
    best = {"learning_rate": 3e-5, "batch_size": 16, "epochs": 3}
    epochs = next(line for line in before.splitlines() if line.startswith("  epochs: 2"))
    (tmp_path / catalog.SEARCH_BEST).parent.mkdir()
    (tmp_path / catalog.SEARCH_BEST).write_text(json.dumps({"best_params": best}))

    changed = search_apply.apply_best(tmp_path, best)
    assert changed == ["train.learning_rate", "train.batch_size", "train.epochs"]
    after = (tmp_path / "params.yaml").read_text()
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(diff) == sorted(
        [
            f"-{epochs}",
            f"+{epochs.replace('epochs: 2', 'epochs: 3')}",  # its comment kept
            "-  learning_rate: 5.0e-5",
            "+  learning_rate: 3.0e-5",
            "-  batch_size: 32",
            "+  batch_size: 16",
        ]
    )
    assert "# tunepipe parameters: one section per stage (see dvc.yaml)." in after
    assert "  metric_for_best_model: null  # null: the task's main metric" in after
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert new["train"] == old["train"] | {"learning_rate": 3e-5, "batch_size": 16, "epochs": 3}
    assert {k: v for k, v in new.items() if k != "train"} == {k: v for k, v in old.items() if k != "train"}
    assert params_mod.read(tmp_path / "params.yaml").train.learning_rate == 3e-5
    assert json.loads((tmp_path / catalog.SEARCH_BEST).read_text())["applied"] is True

    assert search_apply.apply_best(tmp_path, best) == []  # already there
    with pytest.raises(PipelineError, match="learning_rat is not a train"):
        search_apply.apply_best(tmp_path, {"learning_rat": 1e-3})


@pytest.mark.e2e
def test_search_flow_runs_the_data_stages_then_the_study(project: Path, prefect_backend: None) -> None:
    from flows.search import search as search_flow
    from tests.helpers import artifacts, task_states

    # The stages ran in-process: record them in dvc.lock, so the flow's DVC tasks find them up to
    # date (running them again would cost this test another 25 s; test_flow covers re-runs).
    dvc(project, "commit", "--force", "--with-deps", "tokenize")
    configure(project, sampler="grid", space={"learning_rate": [1e-3, 3e-3]})
    # One epoch on the tiny model may land anywhere: this test is about lineage, not quality.
    set_params(project, **{"evaluate.thresholds": {"accuracy": 0.0}})
    state = search_flow(root=str(project), apply=True, return_state=True)
    assert state.is_completed()
    assert task_states(state) == {
        "pretrained": "Cached",
        "load": "Cached",
        "validate": "Cached",
        "tokenize": "Cached",
        "search": "Completed",
        "apply-best": "Completed",
    }
    assert {"search-trials", "search-best"} <= artifacts(state)
    result = state.result()
    assert result["trials"] == {"COMPLETE": 2} and len(result["table"]) == 2
    applied = params_mod.read(project / "params.yaml").train
    assert applied.learning_rate == result["best_params"]["learning_rate"]
    assert result["applied"] == ([] if applied.learning_rate == 3e-3 else ["train.learning_rate"])
    assert_only_best_model(project)

    # The normal pipeline retrains on the applied values; the registered version names the study.
    repro = dvc(project, "repro")
    assert "Running stage 'train'" in repro.stdout and "Running stage 'tokenize'" not in repro.stdout
    tunepipe(project, "register")
    record = json.loads(tunepipe(project, "lineage", "v0.1.0", "--json").stdout)
    assert record["resolved_params"]["train"]["learning_rate"] == result["best_params"]["learning_rate"]
    study = record["search"]
    assert study["study_name"] == result["study_name"] and study["sampler"] == "grid"
    assert study["best_trial"] == result["best_trial"] and study["best_params"] == result["best_params"]
    assert study["trials"] == {"COMPLETE": 2} and study["storage"].startswith("sqlite:///")
    assert f"search study        {result['study_name']}" in tunepipe(project, "lineage", "v0.1.0").stdout

    # A hand edit after applying means the study no longer explains the model: no search record.
    set_params(project, **{"train.learning_rate": 5e-3})
    assert lineage.search_record(project, params_mod.read(project / "params.yaml")) is None


@pytest.mark.e2e
def test_search_flow_fails_on_a_bad_space_before_any_stage(project: Path, prefect_backend: None) -> None:
    from flows.search import search as search_flow
    from tests.helpers import task_states

    set_params(project, **{"search.space": {"learning_rat": [1e-3]}})
    state = search_flow(root=str(project), return_state=True)
    assert state.is_failed()
    assert state.message == "params.yaml: search.space.learning_rat: not a train.* parameter"
    assert task_states(state) == {}  # no data stage ran for a study that cannot start


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        ({"search.space": {}}, [], "params.yaml: search.space is empty; name the train.* values to search"),
        ({"search.space": {"batch_size": []}}, [], "search.space.batch_size: an empty list"),
        ({}, ["--trials", "-1"], "search: trials must be 0 or more, got -1"),
    ],
)
def test_a_search_that_cannot_start_fails_before_a_prefect_server_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    args: list[str],
    message: str,
) -> None:
    """One error line, no traceback, and no flow (whose temporary server alone takes seconds)."""
    import flows.search

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, **change)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(flows.search, "search", lambda **kwargs: started.append(kwargs))
    with pytest.raises(SystemExit) as exit_:
        flows.search.main(["--root", str(tmp_path), *args])
    assert exit_.value.code == 1 and started == []
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.unit
def test_search_command_passes_its_options_to_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.search

    seen: list[list[str] | None] = []
    monkeypatch.setattr(flows.search, "main", seen.append)
    cli.main(["--root", "/some/project", "search", "--trials", "5", "--apply"])
    cli.main(["search"])
    assert seen == [["--root", "/some/project", "--trials", "5", "--apply"], ["--root", "."]]
