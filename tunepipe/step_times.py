"""How steady training ran: the wall time of each optimizer step, summarised per run.

A run that stalls (other processes on the CPU, thread oversubscription, a GPU throttling) shows as
steps far above the median; the summary goes to reports/train_run.json and the train stage's
output, so a slow run says whether it was uniformly slow or stalled in stretches. Evaluations
and checkpoint saves happen between steps and are counted apart.

With length grouping a step's time follows its batch's padded length: the longest batches take
several times the median step by design. Each step's time per padded token is summarised too; a
stall shows there, where a long batch does not.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

SLOW_FACTOR = 3.0  # a step this many times the median counts as a stall


def after_warmup(values: list[float]) -> list[float]:
    """The steps' figures without the first, which warms up (a lone step is kept)."""
    return values[1:] or values[:1]


def summary(
    timed: list[float],
    pauses: list[float],
    tokens: list[int] | None = None,
    evaluations: list[float] | None = None,
) -> dict[str, Any] | None:
    """Median, 95th percentile and max step time, and how many steps took over SLOW_FACTOR x the
    median; `pauses` (evaluations, saves between and after steps) only as a total, of which
    `evaluations` (each one's runtime) apart. None without steps. `tokens`, the padded tokens
    each step trained on, adds the same per padded token.

    The first step warms up (allocations, kernel and primitive selection: several times a later
    step, every run) and is reported on its own, out of the statistics."""
    if not timed:
        return None
    first, steps = timed[0], after_warmup(timed)
    median = statistics.median(steps)
    ordered = sorted(steps)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    slowest = max(steps)
    return {
        "steps": len(timed),
        "first_s": round(first, 4),
        "median_s": round(median, 4),
        "p95_s": round(p95, 4),
        "max_s": round(slowest, 4),
        "max_over_median": round(slowest / median, 2) if median > 0 else None,
        "slow_steps": sum(s > SLOW_FACTOR * median for s in steps),
        "slowest_step": steps.index(slowest) + 1 + (len(timed) > 1),
        "in_steps_s": round(sum(timed), 1),
        "between_steps_s": round(sum(pauses), 1),
        "evaluations": len(evaluations or []),
        "evaluations_s": round(sum(evaluations or []), 1),
        **per_token(timed, tokens),
    }


def per_token(timed: list[float], tokens: list[int] | None) -> dict[str, Any]:
    """Seconds per 1,000 padded tokens: median and max over the steps after the first, and how
    many took over SLOW_FACTOR x the median. Empty when a step's tokens were not counted."""
    if not tokens or len(tokens) != len(timed) or min(tokens) <= 0:
        return {}
    rates = after_warmup([s / n * 1000 for s, n in zip(timed, tokens, strict=True)])
    median = statistics.median(rates)
    return {
        "per_1k_tokens_median_s": round(median, 4),
        "per_token_max_over_median": round(max(rates) / median, 2) if median > 0 else None,
        "per_token_slow_steps": sum(r > SLOW_FACTOR * median for r in rates),
    }


def describe(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "train: no optimizer step timed (resumed at the end?)"
    line = (
        f"train: {stats['steps']} steps, median {stats['median_s']:.3f} s, p95 {stats['p95_s']:.3f} s, "
        f"max {stats['max_s']:.3f} s ({stats['max_over_median']}x the median; the first, warming up, "
        f"{stats['first_s']:.3f} s)"
    )
    if stats["slow_steps"]:
        line += f"; {stats['slow_steps']} over {SLOW_FACTOR:g}x the median"
    if "per_token_max_over_median" in stats:
        line += (
            f"; per padded token max {stats['per_token_max_over_median']}x the median, "
            f"{stats['per_token_slow_steps']} over {SLOW_FACTOR:g}x"
        )
        if stats["per_token_slow_steps"]:
            line += " (stalls: the CPU or GPU was shared?)"
    elif stats["slow_steps"]:
        line += " (long batches, or the CPU or GPU was shared?)"
    line += f"; {stats['between_steps_s']} s in evaluations and saves"
    if stats.get("evaluations"):
        count = stats["evaluations"]
        line += f" ({count} evaluation{'s' if count != 1 else ''}: {stats['evaluations_s']} s)"
    return line


def timer() -> Any:
    """A TrainerCallback recording each optimizer step's wall time (`.steps`: fetching its batches,
    forward, backward, optimizer), the padded tokens it trained on (`.tokens`, counted by a hook on
    the model's training forward passes), the time spent in evaluations and checkpoint saves
    between steps and after the last (`.pauses`) and each evaluation's runtime (`.evaluations`)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.pauses: list[float] = []
            self.tokens: list[int] = []
            self.evaluations: list[float] = []
            self._counted = 0
            self._hook: Any = None
            self._begin: float | None = None
            self._end: float | None = None
            self._busy = False  # an evaluation or a save since the last step ended

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model = kwargs.get("model")
            if model is not None and self._hook is None:
                self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._busy and self._end is not None:  # the last evaluation and save, after the last step
                self.pauses.append(time.perf_counter() - self._end)
                self._busy = False
            if self._hook is not None:
                self._hook.remove()
                self._hook = None

        def _count(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if module.training and hasattr(ids, "numel"):
                self._counted += int(ids.numel())

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._counted = 0
            now = time.perf_counter()
            self._begin = now
            if self._end is not None:
                if self._busy:
                    self.pauses.append(now - self._end)
                else:  # the batches were fetched after the last step ended: part of this step
                    self._begin = self._end
            self._busy = False

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            now = time.perf_counter()
            if self._begin is not None:
                self.steps.append(now - self._begin)
                self.tokens.append(self._counted)
            self._begin, self._end = None, now

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._busy = True
            metrics = kwargs.get("metrics") or {}
            runtime = next((v for k, v in metrics.items() if k.endswith("_runtime")), None)
            if isinstance(runtime, int | float):
                self.evaluations.append(float(runtime))

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._busy = True

    return StepTimer()
