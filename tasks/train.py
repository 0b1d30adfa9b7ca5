"""Stage `train`: fine-tune the pre-trained model on the tokenized splits; resumes a killed run."""

from __future__ import annotations

from tunepipe import catalog, params
from tunepipe.stage import run
from tunepipe.training import train


def main() -> None:
    p = params.read(catalog.PARAMS)
    report = train(p)
    print(
        f"train: done in {report['train_runtime_s']} s, "
        f"best {report['best_metric']} at {report['best_checkpoint']}"
    )


if __name__ == "__main__":
    run(main)
