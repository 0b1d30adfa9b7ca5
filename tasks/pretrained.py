"""Stage `pretrained`: describe the model in params.model by content (data/pretrained.json).

dvc.yaml runs it before every repro (always_changed); the stages that load the model depend on its
output, so they re-run when the model's files change, not when the same files move.
"""

from __future__ import annotations

import sys

from tunepipe import catalog, model_identity, params
from tunepipe.io import write_json
from tunepipe.stage import run


def main() -> None:
    p = params.read(catalog.PARAMS)
    described = model_identity.describe(p.model)
    write_json(catalog.PRETRAINED, described)
    print(f"pretrained: {model_identity.summary(described)}")
    if not model_identity.pinned(described):
        print(
            "pretrained: model.revision is not a commit sha; the hub may change this model "
            "without anything re-running (params.yaml model.revision)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    run(main)
