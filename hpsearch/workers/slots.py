"""Which workers run where: one per GPU (or per group of GPUs, for trials on several), pinned with
CUDA_VISIBLE_DEVICES, or N on the CPU cores.

A pure function of what the machine shows, tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpsearch.errors import HpsearchError
from hpsearch.workers.startup import THREADS_ENV


@dataclass(frozen=True)
class WorkerSlot:
    label: str
    env: dict[str, str]


def plan_slots(
    gpus: str | None,
    n_workers: int | None,
    n_visible_gpus: int,
    n_cores: int,
    visible_devices: str | None = None,
    gpus_per_trial: int | None = None,
) -> list[WorkerSlot]:
    """One slot per GPU named in `gpus` ("all" or "0,2,3"), or `n_workers` CPU slots; with
    `gpus_per_trial` N, one slot per N GPUs named (in their order), or N CPU processes per slot.

    `visible_devices` is the parent's own CUDA_VISIBLE_DEVICES: GPU i then means its i-th entry.
    Each process gets an equal share of the CPU cores for its torch threads.
    """
    per_trial = gpus_per_trial or 1
    if gpus is not None and n_workers is not None:
        raise HpsearchError("give --gpus or --workers, not both")
    if gpus is None:
        n = n_workers or 1
        threads = str(max(1, n_cores // (n * per_trial)))
        return [
            WorkerSlot(
                f"cpu{k}",
                {"CUDA_VISIBLE_DEVICES": "", THREADS_ENV: threads, "OMP_NUM_THREADS": threads},
            )
            for k in range(n)
        ]
    if n_visible_gpus == 0:
        raise HpsearchError(f"--gpus {gpus}: no GPU is visible here; use --workers N to run on CPU")
    if gpus == "all":
        indexes = list(range(n_visible_gpus))
    else:
        try:
            indexes = [int(part) for part in gpus.split(",")]
        except ValueError:
            raise HpsearchError(
                f"--gpus: expected all or GPU indexes like 0,2,3, got {gpus!r}"
            ) from None
        if len(set(indexes)) != len(indexes):
            raise HpsearchError(f"--gpus: {gpus} names a GPU twice")
        wrong = [i for i in indexes if not 0 <= i < n_visible_gpus]
        if wrong:
            raise HpsearchError(
                f"--gpus: no GPU {wrong[0]}; this machine shows {n_visible_gpus} (0 to "
                f"{n_visible_gpus - 1})"
            )
    if len(indexes) % per_trial:
        raise HpsearchError(
            f"--gpus {gpus} gives {len(indexes)} GPUs, which --gpus-per-trial {per_trial} cannot "
            f"split evenly; name a multiple of {per_trial}, e.g. --gpus "
            f"{','.join(map(str, range(per_trial)))}"
        )
    physical = (
        visible_devices.split(",") if visible_devices else [str(i) for i in range(n_visible_gpus)]
    )
    threads = str(max(1, n_cores // len(indexes)))
    groups = [indexes[k : k + per_trial] for k in range(0, len(indexes), per_trial)]
    return [
        WorkerSlot(
            "gpu" + "-".join(map(str, group)),
            {
                "CUDA_VISIBLE_DEVICES": ",".join(physical[i] for i in group),
                THREADS_ENV: threads,
                "OMP_NUM_THREADS": threads,
            },
        )
        for group in groups
    ]
