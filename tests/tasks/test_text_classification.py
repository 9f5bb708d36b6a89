"""The text-classification task: its metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.tasks.text_classification import classification_metrics


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[predicted]
    metrics = classification_metrics(logits, labels, n_labels=3)
    # class 0: P=1, R=2/3, F1=0.8; class 1: P=1/2, R=1/2, F1=1/2; class 2: P=1/2, R=1, F1=2/3
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert metrics["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["f1_weighted"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6)


def test_absent_class_does_not_drag_macro_average():
    # Label 2 exists in the label set but neither in the data nor in the predictions.
    metrics = classification_metrics(np.eye(3)[[0, 1]], np.array([0, 1]), n_labels=3)
    assert metrics["f1_macro"] == 1.0
