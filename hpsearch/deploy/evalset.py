"""The study's eval set as the forms are measured on it: the very examples its trials were scored
on (the tokenized data cache the workers share, built again if it is not on this machine), padded
into batches by the task's own collator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpsearch.deploy.measure import EVAL_BATCH, N_LATENCY_EXAMPLES
from hpsearch.spec import StudySpec


@dataclass(frozen=True)
class EvalSet:
    tokenizer: object
    label_names: list[str]
    batches: list[dict]
    """The whole set in padded batches of EVAL_BATCH (numpy arrays by input name, and labels)."""
    singles: list[dict]
    """N_LATENCY_EXAMPLES examples alone (batch 1), spread over the set's lengths."""
    n_examples: int
    features: object = None
    """The encoded eval set the batches are made of, row for row, with the task's metadata
    columns (Task.compute_metrics' `features`)."""


def load_eval_set(spec: StudySpec, model_dir: Path, cache_dir: Path) -> EvalSet:
    """The eval set of `spec`, tokenized by the exported tokenizer in `model_dir` (the study's)."""
    from transformers import AutoTokenizer

    from hpsearch.trial import prepare_data, transformers_class

    task = spec.task_spec
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task.prepare_tokenizer(tokenizer)
    # Keyed by the study's model reference: the cache its workers built, if this machine has it.
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir)
    collate = transformers_class(task.collator_class)(tokenizer, return_tensors="np")
    rows = data.eval
    n = len(rows)
    batches = [
        collate(task.model_inputs([rows[i] for i in range(start, min(start + EVAL_BATCH, n))]))
        for start in range(0, n, EVAL_BATCH)
    ]
    # The cached eval set is sorted by length: evenly spaced picks cover short and long texts alike.
    picks = np.unique(np.linspace(0, n - 1, min(N_LATENCY_EXAMPLES, n)).round().astype(int))
    singles = [collate(task.model_inputs([rows[int(i)]])) for i in picks]
    return EvalSet(
        tokenizer,
        data.label_names,
        [dict(b) for b in batches],
        [dict(s) for s in singles],
        task.count_examples(rows),
        features=rows,
    )
