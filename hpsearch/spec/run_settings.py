"""The spec's sections on how a study runs rather than what its trials mean: the budget, how a
lost trial is found and re-run, its checkpoints, and what one trial trains on. Most of them may
change between runs (hpsearch.study.changes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hpsearch.spec.param import StrictModel


class BudgetSpec(StrictModel):
    n_trials: int = Field(ge=1)
    """Study-wide number of trials, across all runs and workers."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds after which one run starts no new trial."""
    at_timeout: Literal["finish", "stop"] = "finish"
    """What a trial still running at the timeout does: `finish` (train to its end, as Optuna's
    timeout) or `stop` at its next evaluation and complete with what it reached, as early
    stopping does: the run then ends within one evaluation interval of its timeout, whatever the
    machine (a SLURM job's time limit, a first run on a slow CPU)."""


class HeartbeatSpec(StrictModel):
    """How a trial whose worker died (kill -9, machine lost) is found and re-run."""

    interval: int = Field(default=10, ge=1)
    """Seconds between a running trial's heartbeats."""
    grace_period: int = Field(default=60, ge=2)
    """A running trial silent this long is failed and re-queued with the same parameters."""
    max_retries: int = Field(default=3, ge=0)
    """How many times one trial is re-queued after losing its worker."""

    @model_validator(mode="after")
    def _grace_exceeds_interval(self) -> HeartbeatSpec:
        if self.grace_period <= self.interval:
            raise ValueError(
                f"grace_period ({self.grace_period}s) must exceed interval ({self.interval}s), "
                "or live trials would be failed"
            )
        return self


class CheckpointSpec(StrictModel):
    """A running trial's checkpoint, from which the re-run of a lost trial resumes (on by default:
    `checkpoint: false` turns it off)."""

    every: int = Field(default=1, ge=1)
    """Evaluations between checkpoints: a lost trial re-trains at most this many evaluation
    intervals."""


class ResourcesSpec(StrictModel):
    """What one trial trains on."""

    gpus_per_trial: int | None = Field(default=None, ge=1, le=64)
    """Devices per trial: each worker trains its trials as this many data-parallel processes (DDP,
    one per GPU; gloo processes on a machine without GPUs). None: one process per worker. Each
    process takes per_device_train_batch_size examples a step, so the effective batch is this many
    times larger (every trial records its effective_batch_size)."""
    resident_models: int = Field(default=4, ge=1, le=64)
    """With `model:` or `dataset.max_length:` searched: the (model, max_length) pairs a worker keeps
    loaded (tokenizer, tokenized data, config) for its next trials, the most recently used first;
    another pair is loaded from the disk cache when a trial draws it."""
