"""The settings a trial gets from the device it trains on, unless the spec sets them.

On a GPU, the CPU side must keep the GPU fed and its tensor cores busy:
- `dataloader_num_workers` 2 (1 with a share of 2 cores, none with 1: the training process keeps a
  core), `dataloader_persistent_workers` (the eval loader runs at every evaluation: without it each
  one would start its loading processes again) and `dataloader_pin_memory` (page-locked batches
  copy to the GPU asynchronously);
- `pad_to_multiple_of: 8` in the data collator: tensor cores take matrices whose sizes are
  multiples of 8 (16-bit); the extra positions are masked, so losses and metrics are unchanged;
- `tf32` on Ampere and newer (compute capability 8.0+): fp32 matrix products, those bf16 mixed
  precision keeps in fp32 and all of an fp32 trial's, run on tensor cores with a 10-bit mantissa;
- `per_device_eval_batch_size` 4 x the smallest train batch the spec allows: evaluation keeps no
  activations for a backward pass, so a batch 4 x one that trains should fit (a fixed 64 could
  not for a large model with long sequences); one size for every trial of a study keeps
  batch-mean metrics (loss, perplexity) weighed alike (study/changes.py).
On any device, `ddp_find_unused_parameters` is false: Trainer otherwise makes DDP search the graph
for unused weights after every backward pass; it is true where gradual unfreezing frees weights
mid-trial (which DDP refuses today: spec/check.py check_trial_group).
On a CPU nothing else changes (DEFAULT_ARGS in trial/arguments.py).

Pure functions of the device's facts (DeviceFacts), so each choice is tested without a GPU;
`probe_device()` reads the facts of this process's device.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from hpsearch.spec import StudySpec, is_conditional, param_ends

AMPERE = (8, 0)  # the first compute capability with TF32 tensor cores
LOADER_WORKERS = 2
EVAL_BATCH_FACTOR = 4
PAD_MULTIPLE = 8
TRAINER_DEFAULT_BATCH = 8  # TrainingArguments.per_device_train_batch_size
COLLATOR_SETTINGS = ("pad_to_multiple_of",)
"""Names of `training:` that go to the data collator, not to TrainingArguments."""


@dataclass(frozen=True)
class DeviceFacts:
    """What the defaults depend on: this process's GPU (None: it trains on the CPU), its CUDA
    compute capability (None where unknown), and the CPU cores this process may use."""

    gpu: str | None
    capability: tuple[int, int] | None = None
    n_cores: int = 1


def probe_device() -> DeviceFacts:
    """This process's device: the GPU it trains on (cuda:0, the one it was pinned to) or none,
    and the torch threads it has (a worker's share of the cores, set before its first trial)."""
    import torch

    return DeviceFacts(*_gpu(), n_cores=torch.get_num_threads())


@functools.cache
def _gpu() -> tuple[str | None, tuple[int, int] | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    properties = torch.cuda.get_device_properties(0)
    if torch.version.cuda is None:  # ROCm: its capability numbers are not CUDA's, and no TF32
        return properties.name, None
    return properties.name, (properties.major, properties.minor)


def training_defaults(
    values: dict[str, Any], facts: DeviceFacts, spec: StudySpec | None = None
) -> dict[str, Any]:
    """TrainingArguments to add to `values` (a trial's) on the device `facts` describe; none that
    `values` sets. `spec` gives the study-wide facts: its smallest train batch, gradual
    unfreezing."""
    unfreezes = spec is not None and _declared(spec, "gradual_unfreezing")
    chosen: dict[str, Any] = {"ddp_find_unused_parameters": bool(unfreezes)}
    if facts.gpu is not None:
        workers = values.get(
            "dataloader_num_workers", min(LOADER_WORKERS, max(0, facts.n_cores - 1))
        )
        chosen |= {
            "dataloader_num_workers": workers,
            "dataloader_pin_memory": True,
            "per_device_eval_batch_size": EVAL_BATCH_FACTOR * _smallest_batch(values, spec),
        }
        if workers:  # DataLoader refuses persistent workers without workers
            chosen["dataloader_persistent_workers"] = True
        if facts.capability is not None and facts.capability >= AMPERE:
            chosen["tf32"] = True
    return {key: value for key, value in chosen.items() if key not in values}


def collator_defaults(values: dict[str, Any], facts: DeviceFacts) -> dict[str, Any]:
    """Data collator arguments: `pad_to_multiple_of` 8 on a GPU, the spec's where it sets it
    (null or 1: no rounding)."""
    if "pad_to_multiple_of" in values:
        multiple = values["pad_to_multiple_of"]
        if multiple is not None and (
            isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1
        ):
            raise ValueError(
                f"pad_to_multiple_of must be a whole number of at least 1 or null, got {multiple!r}"
            )
        return {"pad_to_multiple_of": multiple if multiple != 1 else None}
    return {"pad_to_multiple_of": PAD_MULTIPLE} if facts.gpu is not None else {}


def without_collator_settings(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key not in COLLATOR_SETTINGS}


def _smallest_batch(values: dict[str, Any], spec: StudySpec | None) -> int:
    """The smallest per-device train batch a trial of the study may take (of this trial, with no
    spec): the fixed value, else the low end of the searched range or the smallest choice."""
    name = "per_device_train_batch_size"
    if spec is None:
        return int(values.get(name, TRAINER_DEFAULT_BATCH))
    if name in spec.training:
        return int(spec.training[name])
    param = spec.search_space.get(name)
    if param is None:
        return TRAINER_DEFAULT_BATCH
    smallest = min(v for v in param_ends(param) if v is not None)
    # A trial that leaves a conditional batch size out takes Trainer's.
    return int(min(smallest, TRAINER_DEFAULT_BATCH) if is_conditional(param) else smallest)


def _declared(spec: StudySpec, name: str) -> bool:
    """The spec fixes `name` to a true value, or searches it over values that hold one."""
    if name in spec.training:
        return bool(spec.training[name])
    param = spec.search_space.get(name)
    return param is not None and any(param_ends(param))
