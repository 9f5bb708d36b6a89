"""Which workers run where: one per GPU, pinned with CUDA_VISIBLE_DEVICES, or N on the CPU cores.

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


def plan_slots(gpus: str | None, n_workers: int | None, n_visible_gpus: int, n_cores: int,
               visible_devices: str | None = None) -> list[WorkerSlot]:
    """One slot per GPU named in `gpus` ("all" or "0,2,3"), or `n_workers` CPU slots.

    `visible_devices` is the parent's own CUDA_VISIBLE_DEVICES: GPU i then means its i-th entry.
    Each slot gets an equal share of the CPU cores for its torch threads.
    """
    if gpus is not None and n_workers is not None:
        raise HpsearchError("give --gpus or --workers, not both")
    if gpus is None:
        n = n_workers or 1
        threads = str(max(1, n_cores // n))
        return [WorkerSlot(f"cpu{k}", {"CUDA_VISIBLE_DEVICES": "", THREADS_ENV: threads,
                                       "OMP_NUM_THREADS": threads}) for k in range(n)]
    if n_visible_gpus == 0:
        raise HpsearchError(f"--gpus {gpus}: no GPU is visible here; use --workers N to run on CPU")
    if gpus == "all":
        indexes = list(range(n_visible_gpus))
    else:
        try:
            indexes = [int(part) for part in gpus.split(",")]
        except ValueError:
            raise HpsearchError(f"--gpus: expected all or GPU indexes like 0,2,3, got {gpus!r}") from None
        if len(set(indexes)) != len(indexes):
            raise HpsearchError(f"--gpus: {gpus} names a GPU twice")
        wrong = [i for i in indexes if not 0 <= i < n_visible_gpus]
        if wrong:
            raise HpsearchError(
                f"--gpus: no GPU {wrong[0]}; this machine shows {n_visible_gpus} (0 to {n_visible_gpus - 1})"
            )
    physical = visible_devices.split(",") if visible_devices else [str(i) for i in range(n_visible_gpus)]
    threads = str(max(1, n_cores // len(indexes)))
    return [WorkerSlot(f"gpu{i}", {"CUDA_VISIBLE_DEVICES": physical[i], THREADS_ENV: threads,
                                   "OMP_NUM_THREADS": threads}) for i in indexes]
