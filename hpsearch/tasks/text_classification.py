"""Sequence classification: a text (or a pair of texts) and its label; the default task."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.tasks.base import DatasetBase, Direction, Labels, Task


class TextClassificationData(DatasetBase):
    task: Literal["text-classification"] = Field(
        default="text-classification", exclude=True, repr=False
    )
    text: str = "text"
    text_pair: str | None = None
    """A second text column, for pairs (entailment, paraphrase)."""
    label: str = "label"


class TextClassification(Task):
    name = "text-classification"
    Dataset = TextClassificationData
    metrics: ClassVar[dict[str, Direction]] = {
        "accuracy": "maximize",
        "f1_macro": "maximize",
        "f1_weighted": "maximize",
        "precision_macro": "maximize",
        "recall_macro": "maximize",
        "loss": "minimize",
    }
    default_metric = "accuracy"
    model_class = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    deployable = True
    collator_class = "DataCollatorWithPadding"
    pipeline_task = "text-classification"

    def columns(self, dataset: TextClassificationData) -> dict[str, str]:
        named = {"dataset.text": dataset.text, "dataset.label": dataset.label}
        if dataset.text_pair is not None:
            named["dataset.text_pair"] = dataset.text_pair
        return named

    def check_frame(
        self, frame: pd.DataFrame, dataset: TextClassificationData, origin: str
    ) -> None:
        if pd.api.types.is_float_dtype(frame[dataset.label].dropna()):
            raise SpecError(
                f"dataset.label: column {dataset.label!r} holds floats; a classifier needs integer "
                "or string labels (for tags per token, use task: token-classification)"
            )

    def known_labels(self, features, dataset: TextClassificationData) -> list[str] | None:
        # A ClassLabel feature carries the names its integer ids stand for.
        names = getattr(features.get(dataset.label), "names", None)
        return list(names) if names else None

    def labels(self, train, evaluation, dataset: TextClassificationData, known) -> Labels:
        if known is not None:
            labels = Labels(known, {i: i for i in range(len(known))})
        else:
            values = sorted(train[dataset.label].unique(), key=lambda v: (str(type(v)), v))
            labels = Labels([str(v) for v in values], {v: i for i, v in enumerate(values)})
        unseen = set(evaluation[dataset.label].unique()) - set(labels.ids)
        if unseen:
            raise HpsearchError(
                "dataset: the eval set has labels the training set lacks: "
                f"{sorted(map(str, unseen))}"
            )
        if len(labels.names) < 2:
            raise HpsearchError(
                f"dataset.label: column {dataset.label!r} has a single label {labels.names}; "
                "a classifier needs two or more"
            )
        return labels

    def encode(self, batch, dataset: TextClassificationData, tokenizer, labels: Labels) -> dict:
        texts = [str(t) for t in batch[dataset.text]]
        pairs = [str(t) for t in batch[dataset.text_pair]] if dataset.text_pair else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=dataset.max_length)
        encoded["labels"] = [labels.ids[v] for v in batch[dataset.label]]
        return encoded

    def compute_metrics(self, dataset, tokenizer, labels, features=None):
        n_labels = len(labels)

        def compute(prediction) -> dict[str, float]:
            logits = prediction.predictions
            logits = logits[0] if isinstance(logits, tuple) else logits
            return classification_metrics(logits, prediction.label_ids, n_labels)

        return compute


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, n_labels: int
) -> dict[str, float]:
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
