"""What a study has done: counts by state, the best trial, compute spent and saved by pruning.

Reads only the storage (no torch), so `run`'s final table and read-only views share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.study.budget import count_states, n_spent
from hpsearch.study.pareto import pareto_front

INTERVAL_ATTR = (
    "objective_interval"  # trial user attribute: [low, high], the objective's 95% interval
)
EVAL_EXAMPLES_ATTR = "eval_examples"  # trial user attribute: the eval set's size behind it
EFFECTIVE_BATCH_ATTR = "effective_batch_size"  # trial user attribute: examples per optimizer step
STOPPED_EARLY_ATTR = "stopped_early"  # trial user attribute: true if early stopping ended it
EARLY_STEPS_SAVED_ATTR = (
    "early_stopping_steps_saved"  # trial user attribute: steps it did not train
)
# Trial user attribute of a trial that `budget.at_timeout: stop` ended: the evaluation it completed
# with and the steps it did not train.
STOPPED_AT_TIMEOUT_ATTR = "stopped_at_timeout"


@dataclass(frozen=True)
class Confidence:
    """How sure the best value is: its 95% bootstrap interval over the eval set (trial/interval.py),
    and the other complete trials whose values lie inside it, which the eval set cannot tell from
    the best."""

    low: float
    high: float
    eval_examples: int
    tied: tuple[int, ...] = ()

    def describe(self) -> str:
        """'95% CI 0.712-0.765 over 1000 eval examples; statistically tied with trials 3 and 5'."""
        text = f"95% CI {self.low:.4f}-{self.high:.4f} over {self.eval_examples} eval examples"
        if not self.tied:
            return f"{text}; no other trial within it"
        numbers = [str(n) for n in self.tied]
        listed = numbers[0] if len(numbers) == 1 else f"{', '.join(numbers[:-1])} and {numbers[-1]}"
        return f"{text}; statistically tied with trial{'s' if len(numbers) > 1 else ''} {listed}"


def confidence_of(best: FrozenTrial, complete: list[FrozenTrial]) -> Confidence | None:
    """The best trial's interval and the trials tied with it; None for a trial without an interval
    (a metric that is not resampled, or a trial from before intervals were recorded)."""
    interval = best.user_attrs.get(INTERVAL_ATTR)
    if not interval:
        return None
    low, high = interval
    tied = tuple(
        sorted(
            t.number
            for t in complete
            if t.number != best.number and t.values and low <= t.values[0] <= high
        )
    )
    return Confidence(
        low=low, high=high, eval_examples=best.user_attrs.get(EVAL_EXAMPLES_ATTR, 0), tied=tied
    )


@dataclass(frozen=True)
class StudySummary:
    name: str
    task: str
    metric: str
    direction: str
    n_trials_budget: int
    n_spent: int
    states: dict[str, int]
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    """The best trial's evaluation that gives its value (its last, or its best under
    objective.value: best), the task's metrics only (eval_f1, eval_loss, ...)."""
    best_confidence: Confidence | None = None
    best_effective_batch_size: int | None = None
    """Examples per optimizer step of the best trial: batch size x accumulation x devices."""
    effective_batch_sizes: tuple[int, ...] = ()
    """Every effective batch size the study's trials trained with."""
    train_seconds: float = 0.0
    n_steps: int = 0
    steps_saved: int = 0
    seconds_saved: float = 0.0
    stopped_early: tuple[int, ...] = ()
    """Trials that early stopping ended (COMPLETE, not pruned)."""
    early_stopping_steps_saved: int = 0
    early_stopping_seconds_saved: float = 0.0
    stopped_at_timeout: tuple[int, ...] = ()
    """Trials that a run's timeout ended with `budget.at_timeout: stop` (COMPLETE)."""
    pareto: list[dict[str, Any]] = field(default_factory=list)
    """A multi-objective study's Pareto front (study/pareto.py); its best_* fields are the best
    trial on the first objective."""


def describe_states(states: dict[str, int], none: str = "none") -> str:
    """'5 complete, 3 pruned', as every view of a study says it."""
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or none


def summarize(study: optuna.Study, spec) -> StudySummary:
    """The summary of `study`, searched by `spec` (its task, metric and budget)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        pick = max if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(complete, key=lambda t: t.values[0])
    steps_saved, seconds_saved = _saved_by_pruning(trials)
    stopped = [
        t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get(STOPPED_EARLY_ATTR)
    ]
    return StudySummary(
        name=study.study_name,
        task=spec.task,
        metric=spec.objective.eval_key,
        direction=study.directions[0].name.lower(),
        n_trials_budget=spec.budget.n_trials,
        n_spent=n_spent(trials),
        states=dict(count_states(trials)),
        best_number=best.number if best else None,
        best_value=best.values[0] if best else None,
        best_params=dict(best.params) if best else {},
        best_metrics=_task_metrics(best, spec) if best else {},
        best_confidence=confidence_of(best, complete) if best else None,
        best_effective_batch_size=best.user_attrs.get(EFFECTIVE_BATCH_ATTR) if best else None,
        effective_batch_sizes=tuple(
            sorted(
                {
                    t.user_attrs[EFFECTIVE_BATCH_ATTR]
                    for t in trials
                    if EFFECTIVE_BATCH_ATTR in t.user_attrs
                }
            )
        ),
        train_seconds=sum(t.user_attrs.get("train_seconds", 0.0) for t in trials),
        n_steps=sum(t.user_attrs.get("n_steps", 0) for t in trials),
        steps_saved=steps_saved,
        seconds_saved=seconds_saved,
        stopped_early=tuple(t.number for t in stopped),
        early_stopping_steps_saved=sum(
            t.user_attrs.get(EARLY_STEPS_SAVED_ATTR, 0) for t in stopped
        ),
        early_stopping_seconds_saved=sum(
            _seconds_for(t, t.user_attrs.get(EARLY_STEPS_SAVED_ATTR, 0)) for t in stopped
        ),
        stopped_at_timeout=tuple(
            t.number
            for t in trials
            if t.state == TrialState.COMPLETE and t.user_attrs.get(STOPPED_AT_TIMEOUT_ATTR)
        ),
        pareto=pareto_front(study, spec),
    )


def _task_metrics(trial: FrozenTrial, spec) -> dict[str, float]:
    measured = trial.user_attrs.get("metrics", {})
    return {
        f"eval_{m}": measured[f"eval_{m}"]
        for m in spec.task_spec.metrics
        if f"eval_{m}" in measured
    }


def _seconds_for(trial: FrozenTrial, steps: int) -> float:
    """What `steps` more steps would have cost at the trial's own pace."""
    done = trial.user_attrs.get("n_steps", 0)
    return steps * trial.user_attrs.get("train_seconds", 0.0) / done if done > 0 else 0.0


def _saved_by_pruning(trials: list[FrozenTrial]) -> tuple[int, float]:
    """Steps a pruned trial did not train, and their cost at that trial's own pace."""
    steps, seconds = 0, 0.0
    for trial in trials:
        done = trial.user_attrs.get("n_steps", 0)
        planned = trial.user_attrs.get("n_steps_planned", 0)
        if trial.state != TrialState.PRUNED or done <= 0 or planned <= done:
            continue
        steps += planned - done
        seconds += (planned - done) * trial.user_attrs.get("train_seconds", 0.0) / done
    return steps, seconds
