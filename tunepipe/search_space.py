"""The search space: search.space entries checked against train.* fields, and a trial's values."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

import optuna

from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.params import TrainParams, is_number

RANGE_KEYS = {"low", "high", "log", "step"}


def train_field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainParams)


def coerce(name: str, value: Any, where: str) -> Any:
    """A value as train.<name> would hold it (ints for int fields), or a PipelineError at `where`."""
    value = params_mod._check(value, train_field_types()[name], where)
    params_mod.check_train_value(name, value, where)
    return value


def check_space(space: Mapping[str, Any], sampler: str = "tpe") -> None:
    """Fail on the first malformed entry, naming search.space.<name>, before any training starts."""
    if not space:
        raise PipelineError("params.yaml: search.space is empty; name the train.* values to search")
    types = train_field_types()
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
                coerce(name, value, f"{where}[{i}]")
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
            if not all(is_number(v) for v in (low, high)) or (step is not None and not is_number(step)):
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
                coerce(name, spec[key], f"{where}.{key}")
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
        values[name] = coerce(name, value, f"search.space.{name}")
    return values
