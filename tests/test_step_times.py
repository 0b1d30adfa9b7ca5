"""Step timing: the summary that says whether a run stalled, and the callback that feeds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunepipe import catalog, step_times


@pytest.mark.unit
def test_a_stalled_step_is_counted_and_located() -> None:
    stats = step_times.summary([0.9] + [0.1] * 19 + [0.5] + [0.1] * 5, [2.0, 1.5])
    assert stats is not None
    assert stats["steps"] == 26 and stats["median_s"] == 0.1
    assert stats["first_s"] == 0.9  # warming up: reported, not counted as a stall
    assert stats["max_s"] == 0.5 and stats["max_over_median"] == 5.0
    assert stats["slow_steps"] == 1 and stats["slowest_step"] == 21
    assert stats["between_steps_s"] == 3.5
    assert "1 over 3x the median" in step_times.describe(stats)


@pytest.mark.unit
def test_steady_steps_report_no_stall_and_no_steps_report_none() -> None:
    stats = step_times.summary([2.0, 0.2, 0.21, 0.19, 0.5], [])
    assert stats is not None and stats["slow_steps"] == 0 and stats["max_over_median"] == 2.44
    assert stats["slowest_step"] == 5
    one = step_times.summary([0.3], [])
    assert one is not None and one["median_s"] == one["first_s"] == 0.3
    assert "over" not in step_times.describe(stats).split(")")[-1]
    assert step_times.summary([], []) is None
    assert "no optimizer step" in step_times.describe(None)


@pytest.mark.unit
def test_the_timer_counts_batch_fetching_in_the_step_and_evaluations_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([0.0, 1.0, 1.5, 2.5, 10.0, 11.0])  # begin, end, begin, end, begin, end
    monkeypatch.setattr(step_times.time, "perf_counter", lambda: next(clock))
    timer = step_times.timer()
    timer.on_step_begin(None, None, None)  # 0.0
    timer.on_step_end(None, None, None)  # 1.0
    timer.on_step_begin(None, None, None)  # 1.5: 0.5 s fetching its batch, part of the step
    timer.on_step_end(None, None, None)  # 2.5
    timer.on_evaluate(None, None, None)
    timer.on_step_begin(None, None, None)  # 10.0: 7.5 s evaluating, not a step
    timer.on_step_end(None, None, None)  # 11.0
    assert timer.steps == [1.0, 1.5, 1.0]
    assert timer.pauses == [7.5]


@pytest.mark.unit
def test_the_evaluation_and_save_after_the_last_step_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # The run's last evaluation and checkpoint come after its last step: no step begins after
    # them, so train end closes the pause. Evaluations are told apart by the runtime they report.
    clock = iter([0.0, 1.0, 6.0, 7.0, 15.0])  # begin, end, begin, end, train end
    monkeypatch.setattr(step_times.time, "perf_counter", lambda: next(clock))
    timer = step_times.timer()
    timer.on_step_begin(None, None, None)
    timer.on_step_end(None, None, None)
    timer.on_evaluate(None, None, None, metrics={"eval_loss": 0.5, "eval_runtime": 4.0})
    timer.on_save(None, None, None)
    timer.on_step_begin(None, None, None)
    timer.on_step_end(None, None, None)
    timer.on_evaluate(None, None, None, metrics={"eval_loss": 0.4, "eval_runtime": 6.5})
    timer.on_save(None, None, None)
    timer.on_train_end(None, None, None)
    assert timer.pauses == [5.0, 8.0] and timer.evaluations == [4.0, 6.5]
    stats = step_times.summary(timer.steps, timer.pauses, evaluations=timer.evaluations)
    assert stats is not None
    assert stats["in_steps_s"] == 2.0 and stats["between_steps_s"] == 13.0
    assert stats["evaluations"] == 2 and stats["evaluations_s"] == 10.5
    assert "13.0 s in evaluations and saves (2 evaluations: 10.5 s)" in step_times.describe(stats)
    one = step_times.summary(timer.steps, timer.pauses, evaluations=timer.evaluations[:1])
    assert one is not None and "(1 evaluation: 4.0 s)" in step_times.describe(one)
    # nothing after the last step: train end adds no pause
    clock = iter([0.0, 1.0, 2.0])
    quiet = step_times.timer()
    quiet.on_step_begin(None, None, None)
    quiet.on_step_end(None, None, None)
    quiet.on_train_end(None, None, None)
    assert quiet.pauses == []


@pytest.mark.unit
def test_a_long_batch_is_not_a_stall_per_padded_token() -> None:
    # after the warm-up: a batch 4x as long taking 4x as long, then a true stall
    timed = [0.9, 0.1, 0.1, 0.4, 0.1, 0.5, 0.1]
    tokens = [1000, 1000, 1000, 4000, 1000, 1000, 1000]
    stats = step_times.summary(timed, [], tokens)
    assert stats is not None and stats["slow_steps"] == 2  # by wall time alone: both
    assert stats["per_1k_tokens_median_s"] == 0.1
    assert stats["per_token_max_over_median"] == 5.0 and stats["per_token_slow_steps"] == 1
    assert "per padded token max 5.0x the median, 1 over 3x (stalls" in step_times.describe(stats)
    steady = step_times.summary(timed[:5], [], tokens[:5])
    assert steady is not None and steady["slow_steps"] == 1 and steady["per_token_slow_steps"] == 0
    assert "(long batches" not in step_times.describe(steady) and "stalls" not in step_times.describe(steady)
    # tokens not counted (a model fed without input_ids): the wall-time figures alone
    assert "per_token_slow_steps" not in step_times.summary(timed, [], [0] * 7)  # type: ignore[operator]
    assert "(long batches" in step_times.describe(step_times.summary(timed, []))


@pytest.mark.unit
def test_the_timer_counts_the_padded_tokens_of_training_forwards_only() -> None:
    import torch

    class Model(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return input_ids.float().sum()

    model = Model()
    timer = step_times.timer()
    timer.on_train_begin(None, None, None, model=model)
    for batches in ([(4, 10)], [(4, 12), (2, 7)]):  # one step, then one of two accumulated batches
        timer.on_step_begin(None, None, None)
        for rows, length in batches:
            model(input_ids=torch.ones(rows, length), attention_mask=torch.ones(rows, length))
        timer.on_step_end(None, None, None)
        model.eval()  # an evaluation between steps: not counted
        model(input_ids=torch.ones(64, 50), attention_mask=torch.ones(64, 50))
        model.train()
    timer.on_train_end(None, None, None)
    model(input_ids=torch.ones(3, 3), attention_mask=torch.ones(3, 3))  # the hook is gone
    assert timer.tokens == [40, 62]


@pytest.mark.e2e
def test_the_train_stage_reports_its_step_times(reproduced: tuple[Path, str]) -> None:
    project, output = reproduced
    run = json.loads((project / "reports/train_run.json").read_text())
    train = json.loads((project / "reports/train.json").read_text())
    stats = run["step_times"]
    assert stats["steps"] == train["global_step"]
    assert 0 < stats["median_s"] <= stats["p95_s"] <= stats["max_s"]
    assert f"train: {stats['steps']} steps, median" in output
    assert stats["per_1k_tokens_median_s"] > 0 and stats["per_token_max_over_median"] >= 1
    assert "per padded token max" in output
    # every evaluation counted, the one after the last step too, inside the time between steps
    curve = (project / catalog.live_curve("eval/loss")).read_text().splitlines()[1:]  # header
    assert stats["evaluations"] == len(curve) > 0
    assert 0 < stats["evaluations_s"] <= stats["between_steps_s"]
