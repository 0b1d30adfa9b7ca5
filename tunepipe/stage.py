"""Shared entry point for `python -m tasks.<stage>`: environment defaults and clean errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from tunepipe import catalog
from tunepipe.errors import PipelineError

QUIET_DEFAULTS = {
    "TOKENIZERS_PARALLELISM": "false",
    "DVC_NO_ANALYTICS": "1",
    "DVC_STUDIO_OFFLINE": "true",  # DVCLive (the train stage's logger) sends nothing to Studio
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def set_env_defaults() -> None:
    """Quiet, telemetry-free defaults that a user's own environment can still override."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


# Set by the flow to a file path: a stage creates it when its command really starts. A `dvc repro`
# that leaves it absent restored the stage's outputs from DVC's run-cache instead of running it.
RAN_MARKER = "TUNEPIPE_STAGE_RAN"
# Set on the processes a stage starts under torchrun (tunepipe/launch.py): the launching process
# already cleared stale outputs, and several ranks must not do it at once.
LAUNCHED = "TUNEPIPE_LAUNCHED"


def run(main: Callable[[], None]) -> None:
    """Run a stage; a PipelineError prints one clear line and exits 1 instead of a traceback."""
    set_env_defaults()
    marker = os.environ.pop(RAN_MARKER, None)  # popped: a relaunched child must not count again
    if marker:
        with open(marker, "a"):
            pass
    try:
        if not os.environ.get(LAUNCHED):
            catalog.clean_stale_outputs()
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
