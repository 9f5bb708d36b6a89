"""Test-only hooks that make a CPU trial run out of GPU memory on cue, so the out-of-memory retry
(trial/oom_retry.py) is tested with a real Trainer where no GPU is."""

from __future__ import annotations

import os

import torch
from transformers import TrainerCallback

# Test-only: a Trainer step raises torch.OutOfMemoryError while the per-device batch is above this.
FAKE_OOM_ENV = "HPSEARCH_TEST_OOM_ABOVE"
# Test-only: building the out-of-memory retry's model and Trainer raises torch.OutOfMemoryError.
FAKE_REBUILD_OOM_ENV = "HPSEARCH_TEST_OOM_ON_REBUILD"


class _FakeOutOfMemory(TrainerCallback):
    """Test-only (FAKE_OOM_ENV): out of memory at the first step of a batch above the limit."""

    def on_step_begin(self, args, state, control, **kwargs):
        if args.per_device_train_batch_size > int(os.environ[FAKE_OOM_ENV]):
            raise torch.OutOfMemoryError(f"out of memory (faked by {FAKE_OOM_ENV})")


def fake_out_of_memory() -> list[TrainerCallback]:
    return [_FakeOutOfMemory()] if os.environ.get(FAKE_OOM_ENV) else []
