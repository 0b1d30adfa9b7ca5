"""Reasons for re-running, from status dicts recorded from DVC 3.67 on this pipeline."""

from __future__ import annotations

import pytest

from tunepipe import staleness
from tunepipe.staleness import ALWAYS, STALE, UP_TO_DATE, UPSTREAM_STALE, StageState, assess, reasons

pytestmark = pytest.mark.unit

ORDER = ["pretrained", "load", "validate", "tokenize", "train", "evaluate"]
UPSTREAM = {
    "pretrained": [],
    "load": [],
    "validate": ["load"],
    "tokenize": ["load", "validate", "pretrained"],
    "train": ["tokenize", "pretrained"],
    "evaluate": ["train", "tokenize"],
}
TRAIN_LOCKED = {"seed": 42, "learning_rate": 0.003, "epochs": 10, "freeze": {"embeddings": False}}

# `Repo(".").status()` after `dvc repro`, then train.seed 42 -> 7 in params.yaml.
SEED_CHANGED = {"train": [{"changed deps": {"params.yaml": {"train": "modified"}}}]}
# ... then tunepipe/training.py edited and models/model deleted.
EDITED_AND_DELETED = {
    "train": [
        {"changed deps": {"tunepipe/training.py": "modified", "params.yaml": {"train": "modified"}}},
        {"changed outs": {"models/model": "deleted"}},
    ],
    "evaluate": [{"changed deps": {"models/model": "deleted"}}],
}


def seed_params(seed: int = 7, **more: object) -> dict[str, object]:
    return {"params.yaml": (({"train": TRAIN_LOCKED}), {"train": TRAIN_LOCKED | {"seed": seed} | more})}


def by_stage(states: list[StageState]) -> dict[str, StageState]:
    return {s.stage: s for s in states}


def test_a_changed_params_section_is_opened_to_the_keys_that_changed() -> None:
    entries = SEED_CHANGED["train"]
    assert reasons(entries, seed_params()) == ["params.yaml: train.seed modified (42 -> 7)"]
    nested = {
        "params.yaml": ({"train": TRAIN_LOCKED}, {"train": TRAIN_LOCKED | {"freeze": {"embeddings": True}}})
    }
    assert reasons(entries, nested) == ["params.yaml: train.freeze.embeddings modified (False -> True)"]
    added = seed_params(seed=42, warmup_ratio=0.1)
    assert reasons(entries, added) == ["params.yaml: train.warmup_ratio new"]


def test_a_param_declared_by_its_own_key_is_named_with_its_values() -> None:
    entries = [{"changed deps": {"params.yaml": {"load.preset": "modified", "task": "deleted"}}}]
    params = {"params.yaml": ({"load.preset": "sst2", "task": "x"}, {"load.preset": "rte"})}
    assert reasons(entries, params) == [
        "params.yaml: load.preset modified ('sst2' -> 'rte')",
        "params.yaml: task deleted",
    ]


def test_modified_files_and_deleted_outputs_are_named() -> None:
    got = reasons(EDITED_AND_DELETED["train"], seed_params())
    assert got == [
        "tunepipe/training.py modified",
        "params.yaml: train.seed modified (42 -> 7)",
        "output models/model deleted",
    ]
    assert reasons(EDITED_AND_DELETED["evaluate"]) == ["models/model deleted"]
    assert reasons(["changed command", {"changed deps": {"tunepipe/x.py": "new"}}]) == [
        "command changed in dvc.yaml",
        "tunepipe/x.py new (not in dvc.lock)",
    ]


def test_up_to_date_everywhere_when_dvc_reports_nothing() -> None:
    states = assess({}, ORDER, UPSTREAM)
    assert [s.state for s in states] == [UP_TO_DATE] * len(ORDER)
    assert not any(s.runs or s.reasons for s in states)


def test_a_stage_downstream_of_a_stale_one_may_re_run() -> None:
    states = by_stage(assess(SEED_CHANGED, ORDER, UPSTREAM, params={"train": seed_params()}))
    assert states["train"] == StageState("train", STALE, ("params.yaml: train.seed modified (42 -> 7)",))
    assert states["evaluate"].state == UPSTREAM_STALE and not states["evaluate"].runs
    assert states["evaluate"].shown == "up to date (upstream stale: may re-run)"
    assert states["evaluate"].reasons == ("train stale",)
    assert {s for s, st in states.items() if st.state == UP_TO_DATE} == {
        "pretrained",
        "load",
        "validate",
        "tokenize",
    }


def test_staleness_carries_down_the_whole_chain() -> None:
    status = {"load": [{"changed deps": {"data/raw": "modified"}}]}
    states = by_stage(assess(status, ORDER, UPSTREAM))
    assert states["load"].reasons == ("data/raw modified",)
    assert [states[s].state for s in ("validate", "tokenize", "train", "evaluate")] == [UPSTREAM_STALE] * 4
    assert states["tokenize"].reasons == ("load stale", "validate may re-run")


def test_never_run_stages_say_so_instead_of_listing_every_dep() -> None:
    # A stage missing from dvc.lock: DVC calls each dep modified, params.yaml new, outputs deleted.
    status = {
        "load": [
            {"changed deps": {"tunepipe/io.py": "modified", "data/raw": "modified", "params.yaml": "new"}},
            {"changed outs": {"data/splits": "deleted"}},
        ]
    }
    states = by_stage(assess(status, ORDER, UPSTREAM, never_run=["load", "validate"]))
    assert states["load"] == StageState("load", STALE, (staleness.NEVER_RUN,))
    assert states["validate"].reasons == (staleness.NEVER_RUN,)
    assert states["tokenize"].state == UPSTREAM_STALE


def test_an_always_changed_stage_runs_every_time_without_making_others_stale() -> None:
    states = by_stage(assess({"pretrained": ["always changed"]}, ORDER, UPSTREAM))
    assert states["pretrained"] == StageState(
        "pretrained", ALWAYS, ("runs every time (checks the base model's files)",)
    )
    assert states["pretrained"].runs and states["pretrained"].state != STALE
    assert all(states[s].state == UP_TO_DATE for s in ORDER[1:])


def test_an_always_changed_stage_with_its_own_changes_is_stale() -> None:
    status = {"pretrained": [{"changed deps": {"params.yaml": {"model": "modified"}}}, "always changed"]}
    params = {"pretrained": {"params.yaml": ({"model": {"name": "a"}}, {"model": {"name": "b"}})}}
    states = by_stage(assess(status, ORDER, UPSTREAM, params=params))
    assert states["pretrained"].reasons == ("params.yaml: model.name modified ('a' -> 'b')",)
    assert states["train"].state == UPSTREAM_STALE


def test_json_form() -> None:
    state = StageState("train", STALE, ("tunepipe/training.py modified",))
    assert state.to_json() == {
        "stage": "train",
        "state": "stale",
        "runs": True,
        "reasons": ["tunepipe/training.py modified"],
    }


def test_without_recorded_values_dvc_s_word_stands() -> None:
    assert reasons(SEED_CHANGED["train"]) == ["params.yaml: train modified"]
    same = {"params.yaml": ({"train": TRAIN_LOCKED}, {"train": TRAIN_LOCKED})}
    assert reasons(SEED_CHANGED["train"], same) == ["params.yaml: train modified"]
