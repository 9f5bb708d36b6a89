"""Classification metrics for Trainer's `compute_metrics`; names match spec.METRICS."""

from __future__ import annotations

import numpy as np


def classification_metrics(logits: np.ndarray, labels: np.ndarray, n_labels: int) -> dict[str, float]:
    predictions = np.asarray(logits).argmax(-1)
    labels = np.asarray(labels)
    # confusion[i, j]: examples of class i predicted as class j.
    confusion = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positive = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Macro averages are over the classes present in the labels or the predictions, as sklearn does.
    present = (support + predicted) > 0
    return {
        "accuracy": float(true_positive.sum() / max(len(labels), 1)),
        "f1_macro": float(f1[present].mean()),
        "f1_weighted": float((f1 * support).sum() / max(support.sum(), 1)),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
    }


def make_compute_metrics(n_labels: int):
    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(logits, prediction.label_ids, n_labels)

    return compute_metrics
