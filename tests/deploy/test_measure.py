"""An exported form's outputs over the eval set: one array (classification, tagging) or several
(a span's start and end logits), padded across batches as Trainer pads them."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.deploy.measure import cross_entropy, predict_eval_set, score
from hpsearch.tasks import IGNORED


def test_one_output_is_one_array_as_before():
    batches = [{"labels": np.array([0, 1])}, {"labels": np.array([1])}]
    logits = {2: np.array([[2.0, 0.0], [0.0, 2.0]]), 1: np.array([[0.0, 1.0]])}
    outputs, labels = predict_eval_set(lambda b: logits[len(b["labels"])], batches)
    assert outputs.shape == (3, 2) and labels.tolist() == [0, 1, 1]


def test_start_and_end_logits_of_batches_of_different_lengths():
    rng = np.random.default_rng(0)
    batches = [
        {"start_positions": np.array([1, 2]), "end_positions": np.array([2, 3]), "width": 5},
        {"start_positions": np.array([0]), "end_positions": np.array([0]), "width": 3},
    ]

    def predict(batch):
        shape = (len(batch["start_positions"]), batch["width"])
        return rng.normal(size=shape), rng.normal(size=shape)

    (starts, ends), (first, last) = predict_eval_set(
        predict, batches, ("start_positions", "end_positions")
    )
    assert starts.shape == ends.shape == (3, 5)
    assert (starts[2, 3:] == IGNORED).all()  # padded as Trainer pads predictions
    assert first.tolist() == [1, 2, 0] and last.tolist() == [2, 3, 0]
    metrics = score((starts, ends), (first, last), lambda prediction: {"f1": 1.0})
    expected = (cross_entropy(starts, first) + cross_entropy(ends, last)) / 2
    assert metrics["loss"] == pytest.approx(expected)  # the QA models' own loss: their mean
