"""Why a stage would re-run, in words, from DVC's own status: no hashing of our own.

DVC answers per stage with a list of entries: `{"changed deps": {path: state}}` (a params file
maps to `{param: state}`), `{"changed outs": {path: state}}`, and strings such as "always changed"
or "changed command". A stage that declares a whole params section (`train`) hears only that the
section changed; the leaf keys (`train.seed`) come from the values dvc.lock recorded next to the
current ones, both held by DVC's params dependency. DVC calls a stage downstream of a stale one up
to date until the upstream output really changes, so the graph marks those as "may re-run".
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunepipe.errors import PipelineError

UP_TO_DATE = "up to date"
STALE = "stale"
ALWAYS = "always runs"
UPSTREAM_STALE = "upstream stale"

# Stages with `always_changed: true`: why they run every time (they cannot be stale).
ALWAYS_WHY = {"pretrained": "checks the base model's files"}
ENTRY_WORDS = {
    "changed command": "command changed in dvc.yaml",
    "changed checksum": "stage definition changed in dvc.yaml",
}
NEVER_RUN = "never completed (not in dvc.lock: never run, or each run failed)"

_repr = reprlib.Repr()  # values in reasons stay short: a long list or string is elided
_repr.maxstring = _repr.maxother = 30
_short = _repr.repr

ParamValues = Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]
"""params file -> (values dvc.lock recorded, values in the file now), per stage."""


@dataclasses.dataclass(frozen=True)
class StageState:
    stage: str
    state: str
    reasons: tuple[str, ...] = ()

    @property
    def runs(self) -> bool:
        """Whether `dvc repro` runs this stage as things stand."""
        return self.state in (STALE, ALWAYS)

    @property
    def shown(self) -> str:
        return "up to date (upstream stale: may re-run)" if self.state == UPSTREAM_STALE else self.state

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "state": self.state, "runs": self.runs, "reasons": list(self.reasons)}


def _leaves(value: Mapping[str, Any]) -> dict[str, Any]:
    from dvc.utils.flatten import flatten  # how `dvc params diff` names nested keys

    return flatten(value) if value else {}


def param_reasons(
    file: str, changed: Mapping[str, str], recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    """One reason per changed param; a section DVC reports as a whole is opened to its leaf keys."""
    out = []
    for key, state in changed.items():
        before, after = recorded.get(key), current.get(key)
        found = []
        if state == "modified" and isinstance(before, Mapping) and isinstance(after, Mapping):
            old, new = _leaves(before), _leaves(after)
            for leaf in [*new, *(k for k in old if k not in new)]:
                if leaf not in old:
                    found.append(f"{key}.{leaf} new")
                elif leaf not in new:
                    found.append(f"{key}.{leaf} deleted")
                elif old[leaf] != new[leaf]:
                    found.append(f"{key}.{leaf} modified ({_short(old[leaf])} -> {_short(new[leaf])})")
        elif state == "modified" and key in recorded and key in current:
            found.append(f"{key} modified ({_short(before)} -> {_short(after)})")
        # No values to compare (or none differ in a way we can name): DVC's word stands.
        out += [f"{file}: {reason}" for reason in found or [f"{key} {state}"]]
    return out


def reasons(entries: Sequence[str | Mapping[str, Any]], params: ParamValues | None = None) -> list[str]:
    """Readable reasons from one stage's DVC status entries ("always changed" is not a reason)."""
    out: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            if entry != "always changed":
                out.append(ENTRY_WORDS.get(entry, entry))
            continue
        for kind, changes in entry.items():
            for path, state in changes.items():
                if isinstance(state, Mapping):  # a params file: param -> state
                    recorded, current = (params or {}).get(path, ({}, {}))
                    out += param_reasons(path, state, recorded, current)
                elif kind == "changed outs":
                    out.append(f"output {path} {state}")
                elif state == "new":
                    out.append(f"{path} new (not in dvc.lock)")
                else:
                    out.append(f"{path} {state}")
    return out


def assess(
    status: Mapping[str, Sequence[str | Mapping[str, Any]]],
    stages: Sequence[str],
    upstream: Mapping[str, Collection[str]] | None = None,
    never_run: Collection[str] = (),
    params: Mapping[str, ParamValues] | None = None,
) -> list[StageState]:
    """Each stage's state from DVC's status dict; `stages` in pipeline order, upstream first."""
    result: dict[str, StageState] = {}
    for stage in stages:
        entries = status.get(stage, [])
        own = reasons(entries, (params or {}).get(stage))
        moving = [
            u
            for u in (upstream or {}).get(stage, ())
            if u in result and result[u].state in (STALE, UPSTREAM_STALE)
        ]
        if stage in never_run:
            state = StageState(stage, STALE, (NEVER_RUN,))
        elif own:
            state = StageState(stage, STALE, tuple(own))
        elif "always changed" in entries:
            why = ALWAYS_WHY.get(stage, "always_changed in dvc.yaml")
            state = StageState(stage, ALWAYS, (f"runs every time ({why})",))
        elif moving:
            words = {STALE: "stale", UPSTREAM_STALE: "may re-run"}
            state = StageState(stage, UPSTREAM_STALE, tuple(f"{u} {words[result[u].state]}" for u in moving))
        else:
            state = StageState(stage, UP_TO_DATE)
        result[stage] = state
    return list(result.values())


# --- asking DVC ---------------------------------------------------------------------------------


def _param_values(
    stage: Any, entries: Sequence[Any]
) -> dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Recorded and current values of the params files DVC reports changed (nothing else is read)."""
    from dvc.dependency.param import ParamsDependency

    changed = {
        path
        for e in entries
        if isinstance(e, Mapping)
        for path, s in e.get("changed deps", {}).items()
        if isinstance(s, Mapping)
    }
    return {
        str(dep): (dep.hash_info.value or {}, dep.read_params())
        for dep in stage.deps
        if isinstance(dep, ParamsDependency) and str(dep) in changed
    }


def check(root: Path, stage: str | None = None) -> list[StageState]:
    """The state of every pipeline stage in dvc.yaml order (upstream first), or of one stage."""
    import networkx as nx
    from dvc.exceptions import DvcException

    from tunepipe import dvcrepo

    root = Path(root)
    if not (root / "dvc.yaml").is_file():
        raise PipelineError(
            f"{root / 'dvc.yaml'}: not found; run this in the project directory or pass --root"
        )
    locked = set((dvcrepo.read_lock(root).get("stages") or {}) if (root / "dvc.lock").is_file() else ())
    try:
        with dvcrepo.open_repo(root) as repo:
            graph = repo.index.graph
            declared = [s for s in repo.index.stages if getattr(s, "cmd", None)]
            position = {s: i for i, s in enumerate(declared)}
            order = [
                s
                for s in nx.lexicographical_topological_sort(
                    graph.reverse(copy=False), key=lambda s: position.get(s, -1)
                )
                if s in position
            ]
            if stage is not None:
                order = [s for s in order if s.addressing == stage]
                if not order:
                    names = ", ".join(s.addressing for s in declared)
                    raise PipelineError(f"dvc.yaml: no stage {stage!r} (stages: {names})")
            status = dvcrepo.settle_pretrained(root, repo.status(targets=[stage] if stage else None))
            params = {s.addressing: _param_values(s, status.get(s.addressing, [])) for s in order}
            upstream = {s.addressing: [u.addressing for u in graph.successors(s)] for s in order}
    except DvcException as exc:
        raise PipelineError(f"{root}: dvc status failed: {exc}") from exc
    names = [s.addressing for s in order]
    return assess(status, names, upstream, never_run=[n for n in names if n not in locked], params=params)
