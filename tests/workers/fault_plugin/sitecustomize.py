"""A test plugin: put this folder on PYTHONPATH and every Python process started with it (a real
`hpsearch run` or worker) imports it at start-up (Python's `site` does). It breaks one real code
path, chosen by HPSEARCH_TEST_FAULT, and does nothing without it:

- `drop-metric`: the text-classification metrics lose "accuracy", so the evaluation callback
  (hpsearch/trial/callback.py) raises its KeyError: a bug of hpsearch met inside a trial.
- `oom-then-library-error`: the first trial's training step runs out of memory (torch's own
  exception), and again when it retries at half the batch; the next trial's raises a TypeError
  outside hpsearch: both failures of a configuration.
"""

import os

FAULT = os.environ.get("HPSEARCH_TEST_FAULT")

if FAULT == "drop-metric":
    from hpsearch.tasks import text_classification

    computed = text_classification.classification_metrics

    def classification_metrics_without_accuracy(*args, **kwargs):
        metrics = computed(*args, **kwargs)
        metrics.pop("accuracy")
        return metrics

    text_classification.classification_metrics = classification_metrics_without_accuracy

elif FAULT == "oom-then-library-error":
    import torch
    from transformers import Trainer

    failures = iter(
        [
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB"),
            TypeError("unsupported operand type(s) for +: 'Tensor' and 'NoneType'"),
        ]
    )

    def failing_training_step(self, *args, **kwargs):
        raise next(failures)

    Trainer.training_step = failing_training_step
