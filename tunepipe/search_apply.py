"""A study's outcome into params.yaml: the best values written into train:, comments kept."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml as pyyaml

from tunepipe import catalog
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.io import read_json, write_json, write_text
from tunepipe.params import coerce, same_value, train_field_types


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
    path = root / catalog.PARAMS
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
        if name not in train_field_types():
            raise PipelineError(f"search: best params: {name} is not a train.* parameter")
        coerce(name, value, f"search: best params: {name}")  # written as the trial had it (epochs: 2)
        # a nested value (lora.r) goes into its own mapping under train:
        section, _, key = f"train.{name}".rpartition(".")
        target = data
        for part in section.split("."):
            if not isinstance(target.get(part), Mapping):
                target[part] = {}
            target = target[part]
        if key not in target or not same_value(target[key], value):
            target[key] = value
            changed.append(f"train.{name}")
    if changed:
        out = io.StringIO()
        yaml.dump(data, out)
        params_mod.parse(pyyaml.safe_load(out.getvalue()) or {}, str(path))  # never write a broken file
        write_text(path, out.getvalue())
    best_file = root / catalog.SEARCH_BEST
    if best_file.exists():
        best = read_json(best_file)
        if best.get("best_params") == dict(best_params):
            write_json(best_file, best | {"applied": True})
    return changed
