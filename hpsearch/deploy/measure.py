"""What a deployable form is worth: its file size, its CPU latency per example and the study's
objective on the study's eval set, each measured the same way for every form.

A form is measured through a `predict` function: a padded, tokenized batch (numpy arrays by input
name, as the task's collator makes it) to its logits (numpy). Latency is the forward pass alone
(tokenizing is the same for every form): batch 1, the median over examples spread over the eval
set after a few warm-up calls, on the threads torch uses (ONNX Runtime is given as many).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpsearch.tasks import IGNORED

Predict = Callable[[dict], np.ndarray]
N_LATENCY_EXAMPLES = 100
N_WARMUP = 5
EVAL_BATCH = 64


@dataclass(frozen=True)
class Measurement:
    """One form of the exported model, measured."""

    form: str
    """pytorch fp32, int8 or onnx."""
    path: str
    """Its weights file, relative to the export directory."""
    size_mb: float
    """The weights file's size in MB (10^6 bytes)."""
    latency_ms: float
    """Median milliseconds of one forward pass at batch 1."""
    metric: str
    value: float
    """The study's objective on the study's eval set."""
    metrics: dict[str, float]
    """Every metric the task computes on the eval set (and the loss)."""


def measure_size(path: Path) -> float:
    return path.stat().st_size / 1e6


def measure_latencies(predicts: list[Predict], examples: list[dict]) -> list[float]:
    """Median milliseconds of each `predict` on each example alone (batch 1), after N_WARMUP calls
    each. The forms take turns on every example, so a load that comes and goes on the machine
    slows them all alike rather than the one measured at that moment."""
    for predict in predicts:
        for example in examples[:N_WARMUP]:
            predict(example)
    seconds: list[list[float]] = [[] for _ in predicts]
    for example in examples:
        for predict, taken in zip(predicts, seconds, strict=True):
            start = time.perf_counter()
            predict(example)
            taken.append(time.perf_counter() - start)
    return [1000 * statistics.median(taken) for taken in seconds]


def predict_eval_set(predict: Predict, batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of the whole eval set, batch by batch. Per-token logits (token
    classification) are padded to the longest batch, their labels with IGNORED so no metric reads
    them."""
    logits = [predict(batch) for batch in batches]
    labels = [np.asarray(batch["labels"]) for batch in batches]
    if logits[0].ndim == 3:
        width = max(piece.shape[1] for piece in logits)
        logits = [np.pad(piece, ((0, 0), (0, width - piece.shape[1]), (0, 0))) for piece in logits]
        labels = [
            np.pad(piece, ((0, 0), (0, width - piece.shape[1])), constant_values=IGNORED)
            for piece in labels
        ]
    return np.concatenate(logits), np.concatenate(labels)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy over the labelled positions, as the loss Trainer reports."""
    kept = labels != IGNORED
    picked = logits[kept].astype(np.float64)
    shifted = picked - picked.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(picked)), labels[kept]].mean())


def score(logits: np.ndarray, labels: np.ndarray, compute_metrics: Callable) -> dict[str, float]:
    """The task's own metrics of these predictions, and the loss."""
    from transformers import EvalPrediction

    metrics = dict(compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)))
    metrics["loss"] = cross_entropy(logits, labels)
    return metrics
