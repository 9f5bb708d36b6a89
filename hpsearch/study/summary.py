"""What a study has done: counts by state, the best trial, compute spent and saved by pruning.

Reads only the storage (no torch), so `run`'s final table and read-only views share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.study.budget import count_states, n_spent


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
    """The best trial's last evaluation, the task's metrics only (eval_f1, eval_loss, ...)."""
    train_seconds: float = 0.0
    n_steps: int = 0
    steps_saved: int = 0
    seconds_saved: float = 0.0


def describe_states(states: dict[str, int], none: str = "none") -> str:
    """'5 complete, 3 pruned', as every view of a study says it."""
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or none


def summarize(study: optuna.Study, spec) -> StudySummary:
    """The summary of `study`, searched by `spec` (its task, metric and budget)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(complete, key=lambda t: t.value)
    steps_saved, seconds_saved = _saved_by_pruning(trials)
    return StudySummary(
        name=study.study_name,
        task=spec.task,
        metric=spec.objective.eval_key,
        direction=study.direction.name.lower(),
        n_trials_budget=spec.budget.n_trials,
        n_spent=n_spent(trials),
        states=dict(count_states(trials)),
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_metrics=_task_metrics(best, spec) if best else {},
        train_seconds=sum(t.user_attrs.get("train_seconds", 0.0) for t in trials),
        n_steps=sum(t.user_attrs.get("n_steps", 0) for t in trials),
        steps_saved=steps_saved,
        seconds_saved=seconds_saved,
    )


def _task_metrics(trial: FrozenTrial, spec) -> dict[str, float]:
    measured = trial.user_attrs.get("metrics", {})
    return {f"eval_{m}": measured[f"eval_{m}"] for m in spec.task_spec.metrics if f"eval_{m}" in measured}


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
