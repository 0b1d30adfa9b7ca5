"""Stage `evaluate`: score the model on the test split; a missed threshold exits non-zero, so
nothing is registered."""

from __future__ import annotations

from tunepipe import catalog, model_card, params
from tunepipe.errors import PipelineError
from tunepipe.evaluation import describe_misses, evaluate
from tunepipe.metrics import format_metrics
from tunepipe.stage import run


def main() -> None:
    p = params.read(catalog.PARAMS)
    evaluation = evaluate(p)
    model_card.write_evaluated_card(p, evaluation)  # also when a threshold is missed: it says which
    shown = format_metrics(evaluation["metrics"])
    print(f"evaluate: {shown} on {evaluation['metrics']['examples']} test examples")
    baseline = evaluation.get("baseline")
    if baseline:
        print(
            f"evaluate: majority-class baseline on the test split: accuracy {baseline['accuracy']:.4f} "
            f"(every example labelled {baseline['label']!r})"
        )
    if not evaluation["thresholds"]:
        print("evaluate: no thresholds set (evaluate.thresholds): the gate passes every model")
    if not evaluation["passed"]:
        # The reports are written: they show what missed. The `error:` line is the gate's verdict.
        raise PipelineError(
            f"evaluate: model rejected: {describe_misses(evaluation)} (params.yaml evaluate.thresholds)"
        )


if __name__ == "__main__":
    run(main)
