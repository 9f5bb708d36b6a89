"""What a fitting records of its batch: the effective batch it really trained with, counting every
device of a step (the GPU counts are faked on Trainer's real TrainingArguments: no GPU here)."""

from __future__ import annotations

from hpsearch.trial.arguments import build_training_args
from hpsearch.trial.fit import examples_per_step


def test_the_effective_batch_counts_the_gpus_of_one_process(tmp_path):
    args = build_training_args(
        {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 2}, 0, tmp_path
    )
    # On the CPU: one device, 16 examples x 2 accumulated steps.
    assert args.n_gpu == 0 and examples_per_step(args) == 32
    # A process that saw 4 GPUs (DataParallel): Trainer's batch is 16 x 4 a step, x 2 accumulated.
    args._n_gpu = 4
    assert args.train_batch_size == 64 and examples_per_step(args) == 128
