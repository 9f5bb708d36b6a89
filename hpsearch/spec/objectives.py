"""What a study optimizes: one objective (`objective:`), or several (`objectives:`, a Pareto front).

Several objectives name the evaluation's metrics and the costs hpsearch measures for every trial
trained to its end (hpsearch.trial.cost). The first must be a metric of the evaluation: it is
the one a trial reports at each evaluation and is pruned on (hpsearch.study.quality_pruning),
since a cost is known only once the training is over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from hpsearch.spec.param import StrictModel

# The costs measured after training, each a trial user attribute, with the direction that makes a
# model cheaper: inference latency (ms, batch 1), the saved weights (MB), the parameters (total),
# and the training time (s).
COST_METRICS = {
    "latency_ms": "minimize",
    "model_size_mb": "minimize",
    "params": "minimize",
    "train_seconds": "minimize",
}


class ObjectiveSpec(StrictModel):
    metric: str
    """A metric the task's evaluation returns (see hpsearch/tasks/); "eval_" may prefix it. In
    `objectives:` after the first, also one of COST_METRICS."""
    direction: Literal["maximize", "minimize"] | None = None
    value: Literal["last", "best"] = "last"
    """A trial's value: its last evaluation, or its best one (then its kept model is the weights
    of that evaluation, held in memory, never written as checkpoints)."""

    @field_validator("metric")
    @classmethod
    def _without_prefix(cls, metric: str) -> str:
        return metric.removeprefix("eval_")

    @property
    def eval_key(self) -> str:
        """The key under which Trainer.evaluate() returns the metric."""
        return f"eval_{self.metric}"

    @property
    def is_cost(self) -> bool:
        return self.metric in COST_METRICS

    @property
    def shown_name(self) -> str:
        """How views and the dashboard name it: eval_accuracy, latency_ms."""
        return self.metric if self.is_cost else self.eval_key


def check_objective(objective: ObjectiveSpec, task, key: str, *, costs: bool = False) -> None:
    """The metric is the task's (or, with `costs`, a measured cost), and its direction the one that
    searches for the best model; a missing direction is filled in."""
    metric = objective.metric
    natural_directions = {**task.metrics, **(COST_METRICS if costs else {})}
    if metric not in natural_directions:
        from hpsearch.tasks import TASKS

        elsewhere = [name for name, t in TASKS.items() if metric in t.metrics]
        hint = f" ({metric} is a metric of task: {' and '.join(elsewhere)})" if elsewhere else ""
        if costs:
            hint += f"; or a cost hpsearch measures: {', '.join(COST_METRICS)}"
        raise ValueError(
            f"{key}.metric: unknown metric {metric!r}; the evaluation returns "
            f"{', '.join(task.metrics)}{hint}"
        )
    natural = natural_directions[metric]
    if objective.direction is None:
        object.__setattr__(objective, "direction", natural)
    elif objective.direction != natural:
        raise ValueError(
            f"{key}: direction {objective.direction} for {metric} would search for the worst "
            f"model; use direction: {natural}"
        )


def check_objectives(single: ObjectiveSpec | None, objectives: list[ObjectiveSpec], task) -> None:
    """`objectives:` alone (not with `objective:`), the first a metric of the evaluation, no metric
    twice, `value: best` on the first only."""
    if single is not None:
        raise ValueError(
            "objective: and objectives: both given; keep objectives: (a list) for several "
            "objectives, or objective: for one"
        )
    first = objectives[0]
    if first.is_cost:
        raise ValueError(
            f"objectives.0.metric: {first.metric} is known only after training, but the first "
            "objective is the one trials are pruned on at each evaluation; put a metric of the "
            f"evaluation first ({', '.join(task.metrics)})"
        )
    seen: set[str] = set()
    for i, objective in enumerate(objectives):
        check_objective(objective, task, f"objectives.{i}", costs=i > 0)
        if objective.metric in seen:
            raise ValueError(f"objectives.{i}: {objective.metric} is listed twice; remove one")
        seen.add(objective.metric)
        if i > 0 and objective.value == "best":
            raise ValueError(
                f"objectives.{i}: value: best applies to the first objective only (a trial's "
                "kept model is one evaluation's weights); remove it"
            )
