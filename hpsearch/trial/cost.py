"""What a trained model costs to use: measured for every trial trained to its end, in every study.

Recorded as trial user attributes, and objectives of a multi-objective study (spec/objectives.py):
- `latency_ms`: the median milliseconds of one forward pass at batch 1 on the trial's own device,
  over the same LATENCY_EXAMPLES examples of the eval set for every trial (so the same input
  lengths), after warm-up calls, measured as `export` measures its forms (deploy.measure);
- `model_size_mb`: the weights the kept model holds (the adapter and head alone of a LoRA model),
  in MB (10^6 bytes);
- `params` and `trainable_params`: the model's parameters, all and those trained.
(`train_seconds` is recorded with the trial's other costs, by the runner.) The eval set is sorted
by length, so evenly spaced picks cover short and long examples alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from hpsearch.trial.lora import is_adapter

LATENCY_EXAMPLES = 20
WARMUP_CALLS = 5  # as deploy.measure (a layer above trial/, so not imported from there)


def measure_cost(fitting, eval_rows) -> dict[str, float | int]:
    """The costs of `fitting`'s trained model (see the module's docstring)."""
    model = fitting.model
    parameters = list(model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    if is_adapter(model):
        weights = trainable  # what save_adapter writes: the adapters and the head
    else:
        from hpsearch.trial.model_files import weights_to_save

        weights = list(weights_to_save(model).values())
    return {
        "latency_ms": round(_latency_ms(model, fitting.trainer.data_collator, eval_rows), 4),
        "model_size_mb": round(sum(t.numel() * t.element_size() for t in weights) / 1e6, 4),
        "params": sum(p.numel() for p in parameters),
        "trainable_params": sum(p.numel() for p in trainable),
    }


def _latency_ms(model, collate, rows) -> float:
    n = len(rows)
    picks = np.unique(np.linspace(0, n - 1, min(LATENCY_EXAMPLES, n)).round().astype(int))
    device = next(model.parameters()).device
    singles = [
        {k: v.to(device) for k, v in collate([rows[int(i)]]).items() if torch.is_tensor(v)}
        for i in picks
    ]

    def forward(batch: dict) -> None:
        with torch.inference_mode():
            model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    was_training = model.training
    model.eval()
    try:
        for batch in singles[:WARMUP_CALLS]:
            forward(batch)
        seconds = []
        for batch in singles:
            start = time.perf_counter()
            forward(batch)
            seconds.append(time.perf_counter() - start)
        return 1000 * statistics.median(seconds)
    finally:
        model.train(was_training)
