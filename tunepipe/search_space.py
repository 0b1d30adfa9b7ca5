"""A trial's values from search.space (the space itself is checked in tunepipe/params.py, which
parses params.yaml without importing optuna)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from tunepipe.params import check_space, coerce


def _is_int_range(spec: Mapping[str, Any]) -> bool:
    bounds = [spec["low"], spec["high"]] + ([spec["step"]] if spec.get("step") is not None else [])
    return all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)


def suggest(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's train.* values: a list is a categorical choice, a mapping a range (int when its
    bounds are ints). Values come back typed as the train field (e.g. epochs as float)."""
    values = {}
    for name, spec in check_space(space).items():
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
        values[name] = coerce(name, value, f"search.space.{name}")
    return values
