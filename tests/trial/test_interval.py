"""The bootstrap interval of a trial's objective, computed by the task's own metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from hpsearch.tasks.token_classification import TagMetrics
from hpsearch.trial.interval import RememberLastEvaluation, bootstrap_interval


def accuracy_of(prediction: EvalPrediction) -> dict:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def predictions_with_accuracy(n: int, accuracy: float, seed: int = 0) -> EvalPrediction:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    right = rng.permutation(n) < round(accuracy * n)
    guessed = np.where(right, labels, (labels + 1) % 3)
    return EvalPrediction(predictions=np.eye(3)[guessed], label_ids=labels)


@pytest.mark.parametrize("n", [200, 500, 2000])
def test_the_interval_of_an_accuracy_matches_the_binomial_one(n):
    low, high = bootstrap_interval(
        accuracy_of, predictions_with_accuracy(n, 0.73), "accuracy", rounds=1000
    )
    # A proportion's 95% interval is about +-1.96 sqrt(p(1-p)/n): the bootstrap finds that width.
    half_width = 1.96 * math.sqrt(0.73 * 0.27 / n)
    assert low < 0.73 < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_the_interval_is_repeatable_and_narrows_with_more_examples():
    small = predictions_with_accuracy(250, 0.8)
    assert bootstrap_interval(accuracy_of, small, "accuracy") == bootstrap_interval(
        accuracy_of, small, "accuracy"
    )
    narrow = bootstrap_interval(accuracy_of, predictions_with_accuracy(4000, 0.8), "accuracy")
    wide = bootstrap_interval(accuracy_of, small, "accuracy")
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2


def test_the_task_metric_is_resampled_by_sentence_for_token_classification():
    # Entity F1 of seqeval, resampled sentence by sentence: padded positions (-100) stay ignored.
    labels = ["O", "B-person", "I-person"]
    compute = TagMetrics(labels)
    rng = np.random.default_rng(1)
    gold = rng.choice([0, 1, 2], size=(120, 8), p=[0.6, 0.2, 0.2])
    gold[:, 6:] = -100
    guessed = np.where(rng.random(gold.shape) < 0.8, gold, 0).clip(0)
    prediction = EvalPrediction(predictions=np.eye(3)[guessed], label_ids=gold)
    value = compute(prediction)["f1"]
    low, high = bootstrap_interval(compute, prediction, "f1", rounds=100)
    assert low <= value <= high and high - low > 0


def test_the_last_evaluation_is_remembered():
    remembered = RememberLastEvaluation(accuracy_of)
    first, second = predictions_with_accuracy(10, 0.5), predictions_with_accuracy(10, 0.9, seed=1)
    remembered(first)
    assert remembered(second) == accuracy_of(second) and remembered.last is second


# Labels of 4 examples, and of 2 sentences of 4 tagged tokens, to score with the task's metrics.
GOLD = {
    "text-classification": np.array([0, 1, 2, 1]),
    "token-classification": np.array([[0, 1, 2, 0], [1, 2, 0, 0]]),
}


@pytest.mark.parametrize("task_name", sorted(GOLD))
def test_every_metric_but_trainers_comes_from_compute_metrics(task_name):
    from hpsearch.tasks import TASKS

    task = TASKS[task_name]
    dataset = task.Dataset(task=task_name, source="data.csv")
    compute = task.compute_metrics(dataset, None, ["O", "B-person", "I-person"])
    gold = GOLD[task_name]
    returned = compute(EvalPrediction(predictions=np.eye(3)[gold], label_ids=gold))
    # What the task does not leave to Trainer (trainer_metrics), its compute_metrics returns: the
    # interval's metric is decided from the task alone, before any evaluation.
    assert set(task.metrics) - task.trainer_metrics <= set(returned)
    assert task.trainer_metrics <= set(task.metrics)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real one-step fine-tuning per objective metric, on the tiny spec's data."""
    import copy
    import os

    from hpsearch.spec import parse_spec
    from hpsearch.trial import load_for_training
    from hpsearch.trial.fit import start_fit
    from tests.conftest import TINY_SPEC

    os.environ.setdefault("HPSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))

    def fit(metric: str):
        raw = copy.deepcopy(TINY_SPEC)
        raw["dataset"].update(max_train_samples=16, max_eval_samples=8)
        raw["objective"] = {"metric": metric}
        raw["pruner"] = {"name": "none", "evals_per_epoch": 1}
        spec = parse_spec(raw, "t")
        loaded = load_for_training(spec)
        values = {**spec.training, "learning_rate": 1e-4, "per_device_train_batch_size": 16}
        fitting = start_fit(
            spec,
            loaded.data,
            loaded.factory,
            loaded.tokenizer,
            values,
            seed=0,
            scratch=tmp_path_factory.mktemp("scratch"),
        )
        fitting.train()
        return spec, fitting

    return fit


@pytest.mark.slow
def test_the_interval_is_computed_for_accuracy_and_none_for_the_loss(trained):
    spec, fitting = trained("accuracy")
    low, high = fitting.interval(spec)
    # Accuracy is the task's own metric: resampled, its interval holds the trial's value.
    assert low <= fitting.value <= high
    spec, fitting = trained("loss")
    # The loss is Trainer's: no predictions to resample it from, so no interval.
    assert fitting.interval(spec) is None


@pytest.mark.slow
def test_a_key_error_while_resampling_is_not_swallowed(trained):
    spec, fitting = trained("accuracy")
    compute = fitting.scored.compute
    # A metric function that loses the objective's key on a resample (a bug in it).
    fitting.scored.compute = lambda prediction: {
        k: v for k, v in compute(prediction).items() if k != "accuracy"
    }
    # The bug surfaces instead of the interval silently going missing.
    with pytest.raises(KeyError, match="accuracy"):
        fitting.interval(spec)
