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


def predict_eval_set(
    predict: Predict, batches: list[dict], label_columns: tuple[str, ...] = ("labels",)
):
    """Outputs and labels of the whole eval set, batch by batch: an array each, or with several
    outputs (a task's output_names, its label_columns) a tuple of them, as Trainer gives them.
    Per-token outputs are padded to the longest batch: logits of a tag per token (3 dimensions)
    with 0 and per-token labels with IGNORED, so no metric reads them; per-token scores (a span's
    start or end, 2 dimensions whose width varies by batch) with IGNORED, as Trainer pads them."""
    predicted = [_as_tuple(predict(batch)) for batch in batches]
    outputs = [_join([p[i] for p in predicted]) for i in range(len(predicted[0]))]
    labels = [_join_labels([np.asarray(b[c]) for b in batches]) for c in label_columns]
    if len(outputs) == 1:
        return outputs[0], labels[0]
    return tuple(outputs), tuple(labels)


def _as_tuple(output) -> tuple:
    return output if isinstance(output, tuple) else (output,)


def _join(pieces: list[np.ndarray]) -> np.ndarray:
    if pieces[0].ndim == 3:
        width = max(piece.shape[1] for piece in pieces)
        pieces = [np.pad(piece, ((0, 0), (0, width - piece.shape[1]), (0, 0))) for piece in pieces]
    elif pieces[0].ndim == 2 and len({piece.shape[1] for piece in pieces}) > 1:
        width = max(piece.shape[1] for piece in pieces)
        pieces = [
            np.pad(piece, ((0, 0), (0, width - piece.shape[1])), constant_values=IGNORED)
            for piece in pieces
        ]
    return np.concatenate(pieces)


def _join_labels(pieces: list[np.ndarray]) -> np.ndarray:
    if pieces[0].ndim == 2:
        width = max(piece.shape[1] for piece in pieces)
        pieces = [
            np.pad(piece, ((0, 0), (0, width - piece.shape[1])), constant_values=IGNORED)
            for piece in pieces
        ]
    return np.concatenate(pieces)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy over the labelled positions, as the loss Trainer reports."""
    kept = labels != IGNORED
    picked = logits[kept].astype(np.float64)
    shifted = picked - picked.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(picked)), labels[kept]].mean())


def score(outputs, labels, compute_metrics: Callable) -> dict[str, float]:
    """The task's own metrics of these predictions, and the loss: the cross-entropy of the
    logits, or with several outputs (a span's start and end) the mean of theirs, as the models'
    own loss is."""
    from transformers import EvalPrediction

    metrics = dict(compute_metrics(EvalPrediction(predictions=outputs, label_ids=labels)))
    pairs = zip(_as_tuple(outputs), _as_tuple(labels), strict=True)
    metrics["loss"] = float(np.mean([cross_entropy(o, target) for o, target in pairs]))
    return metrics
