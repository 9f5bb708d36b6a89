"""The device a worker's trials train on, as the study's note and status show it."""

from __future__ import annotations

from typing import Any

import torch

from hpsearch.trial.precision import auto_precision, precision_name


def count_gpus() -> int:
    return torch.cuda.device_count()


def describe_device(training: dict[str, Any], ranks: int = 1) -> str:
    """Where and in what precision this worker's trials train, e.g. "cpu (2 threads, bf16)", or
    "2 x cuda (NVIDIA H100, bf16, DDP)" for a trial group of 2 ranks."""
    precision = precision_name({**auto_precision(training), **training})
    if ranks > 1:
        what = (
            f"cuda ({torch.cuda.get_device_name()}"
            if torch.cuda.is_available()
            else f"cpu ({torch.get_num_threads()} threads"
        )
        return f"{ranks} x {what}, {precision}, DDP)"
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}, {precision})"
    return f"cpu ({torch.get_num_threads()} threads, {precision})"
