"""What may change between runs of a stored study, decided by what a trial's value means.

Every trial of a study must be comparable with every other: its value is the objective measured on
the same data, for the same model, task and metric, with parameters drawn from the same space and
the rest of the training fixed alike. A key that changes that (the data and its caps, max_length,
the model, the task, the objective, the search space, a fixed training value, a technique, the
evaluation schedule) is refused: the new spec is a new study. A key that changes only how or how
long a run goes (the budget, the heartbeat, the checkpoints, the resources, the sampler, which
trials the pruner stops, the seed of later trials, and the TrainingArguments fields of
RUN_ONLY_TRAINING_ARGS) may change; hpsearch.study.open records the change in the study.
docs/spec.md ("What may change between runs") has the table, with the reasons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hpsearch.spec import StudySpec

# Spec keys (dotted; a section covers its keys) that steer a run without changing what a trial's
# value means, with the reason. A key covered neither here nor below is refused.
RUN_ONLY_KEYS = {
    "budget": "how many trials the study runs, and how long one run starts them",
    "heartbeat": "how a lost trial is found and re-queued; a re-run keeps its parameters and seed",
    "checkpoint": (
        "how much of a lost trial's training its re-run repeats; a resumed trial trains the "
        "same steps with the same state, so its value is an uninterrupted run's"
    ),
    "resources": (
        "where a trial trains; every trial records its world size and effective batch, and "
        "--gpus-per-trial already changes it per worker without the spec"
    ),
    "sampler": (
        "which parameters are tried next; a trial's value for given parameters does not depend "
        "on how they were proposed"
    ),
    "seed": (
        "the seeds of later trials (trial k trains with seed + k): values are already drawn with "
        "a seed per trial, and each trial records its own, so a re-run keeps it"
    ),
    "warm_start": (
        "which configurations are tried first; a trial's value for given parameters does not "
        "depend on where they came from"
    ),
    # The pruner's policy decides which trials stop, not what an evaluation measures (rungs are
    # evaluation indexes). evals_per_epoch is not here: it moves a trial's evaluations, and so
    # what a rung, a pruned trial's value and objective.value: best mean.
    **{
        f"pruner.{key}": "which trials are stopped early; each evaluation measures the same"
        for key in (
            "name",
            "first_rung",
            "min_trials",
            "min_resource",
            "reduction_factor",
            "n_startup_trials",
            "n_warmup_steps",
        )
    },
}

# TrainingArguments fields of `training:` that change how a trial runs, not what it computes.
# Every other training value (learning rate, epochs, precision, dataloader_drop_last, a model knob,
# a generation setting, ...) is refused. hpsearch sets the logging and saving fields itself
# (hpsearch.trial.arguments), so a spec holds none.
RUN_ONLY_TRAINING_ARGS = {
    "per_device_eval_batch_size": "the same eval examples, in batches of another size",
    "eval_accumulation_steps": "when predictions move off the device during evaluation",
    "dataloader_num_workers": "how many processes load batches (the order stays the sampler's)",
    "dataloader_pin_memory": "whether batches are copied from page-locked memory",
    "dataloader_prefetch_factor": "how many batches each loading process prepares ahead",
    "dataloader_persistent_workers": "whether loading processes outlive one pass over the data",
    "gradient_checkpointing": "activations recomputed in the backward pass instead of kept",
    "torch_empty_cache_steps": "how often the device's memory cache is emptied",
    "ddp_timeout": "how long a multi-GPU trial's ranks wait for one another",
    "ddp_find_unused_parameters": "whether DDP looks for parameters without a gradient each step",
    "pad_to_multiple_of": "how far each batch is padded (padding is masked out)",
}
# Metrics taken from Trainer's eval_loss: a mean of each eval batch's mean, weighted by its
# examples. Where examples score different numbers of tokens, batches of another size weigh them
# differently, so per_device_eval_batch_size changes the value of a study that optimizes these.
BATCH_MEAN_METRICS = ("loss", "perplexity")


@dataclass(frozen=True)
class SpecChange:
    key: str
    """The dotted key, e.g. training.per_device_eval_batch_size."""
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {json.dumps(self.old)} -> {json.dumps(self.new)}"


def spec_changes(old: StudySpec, new: StudySpec) -> list[SpecChange]:
    """Every key of two specs (their stored JSON form) whose value differs, sorted by key."""
    return _leaf_changes(old.to_dict(), new.to_dict(), "")


def meaning_changes(old: StudySpec, new: StudySpec) -> list[SpecChange]:
    """The changes from `old` to `new` that change what a trial's value means (to be refused)."""
    return [c for c in spec_changes(old, new) if not runs_only(c.key, old)]


def runs_only(key: str, spec: StudySpec) -> bool:
    """True when changing `key` of `spec` steers a run only; False when it changes what a trial's
    value means."""
    parts = key.split(".")
    if parts[0] == "training" and len(parts) == 2:
        if parts[1] == "per_device_eval_batch_size":
            return spec.objective.metric not in BATCH_MEAN_METRICS
        return parts[1] in RUN_ONLY_TRAINING_ARGS
    return any(".".join(parts[:n]) in RUN_ONLY_KEYS for n in range(1, len(parts) + 1))


def _leaf_changes(old: Any, new: Any, prefix: str) -> list[SpecChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            changes += _leaf_changes(old.get(key), new.get(key), f"{prefix}{key}.")
        return changes
    if old != new:
        return [SpecChange(prefix.rstrip("."), old, new)]
    return []
