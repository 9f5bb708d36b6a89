"""How far a trial's objective can be trusted: a bootstrap interval over the eval set.

The eval set is a sample, so a trial's metric is an estimate: on 500 examples an accuracy of 0.73
is 0.73 +- 0.04 at 95%. The interval is a percentile bootstrap: the predictions of the evaluation
that gives the trial's value (its last, or its best under `objective.value: best`) resampled with
replacement, example by example, and the task's own metric computed on each resample, so it holds
for any metric the task computes (accuracy, F1, entity F1), not only for a proportion.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from transformers import EvalPrediction

ROUNDS = 200
LEVEL = 0.95


class RememberLastEvaluation:
    """The task's compute_metrics, keeping the predictions of the evaluation it last scored."""

    def __init__(self, compute: Callable[[EvalPrediction], dict]):
        self.compute = compute
        self.last: EvalPrediction | None = None

    def __call__(self, prediction: EvalPrediction) -> dict:
        self.last = prediction
        return self.compute(prediction)


def bootstrap_interval(
    compute: Callable[[EvalPrediction], dict],
    prediction: EvalPrediction,
    metric: str,
    rounds: int = ROUNDS,
    level: float = LEVEL,
    seed: int = 0,
    per_example: np.ndarray | None = None,
) -> tuple[float, float]:
    """The `level` percentile interval of `compute(...)[metric]` over `rounds` resamples of the
    evaluated examples. Seeded: the same predictions give the same interval. With `per_example`
    (each example's score, whose mean is the metric: a task whose example is several features,
    Task.example_scores) the examples' scores are resampled instead of the prediction rows."""
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    if per_example is not None:
        scores = np.asarray(per_example, dtype=float)
        means = scores[rng.integers(0, scores.size, size=(rounds, scores.size))].mean(axis=1)
        low, high = np.percentile(means, [tail, 100 - tail])
        return float(low), float(high)
    n = _n_examples(prediction.label_ids)
    values = []
    for _ in range(rounds):
        rows = rng.integers(0, n, size=n)
        resampled = EvalPrediction(
            predictions=_take(prediction.predictions, rows),
            label_ids=_take(prediction.label_ids, rows),
        )
        values.append(float(compute(resampled)[metric]))
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _n_examples(arrays) -> int:
    return len(arrays[0] if isinstance(arrays, (tuple, list)) else arrays)


def _take(arrays, rows: np.ndarray):
    """The same rows of an array, or of each array in a tuple (a model's several outputs)."""
    if isinstance(arrays, (tuple, list)):
        return type(arrays)(_take(a, rows) for a in arrays)
    return np.asarray(arrays)[rows]
