"""Stage `train`: fine-tune the pre-trained model on the tokenized splits; resumes a killed run.
Above one process (train.processes x train.nodes) it relaunches itself under torchrun."""

from __future__ import annotations

from tunepipe import catalog, params, step_times
from tunepipe.stage import run
from tunepipe.training import run_stage


def main() -> None:
    p = params.read(catalog.PARAMS)
    report = run_stage(p, "tasks.train")
    if report is not None:
        print(
            f"train: done in {report['train_runtime_s']} s, "
            f"best {report['best_metric']} at {report['best_checkpoint']}"
        )
        print(step_times.describe(report["step_times"]))


if __name__ == "__main__":
    run(main)
