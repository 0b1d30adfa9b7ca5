"""Samplers that resume correctly: a grid that revisits failed points, TPE reseeded per trial."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
GRID_POINT = "tunepipe_grid_point"  # system attr: the values a grid trial evaluates


class Grid(optuna.samplers.GridSampler):
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


class ReseededTPE(optuna.samplers.TPESampler):
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
