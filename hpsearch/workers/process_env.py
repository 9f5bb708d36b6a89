"""What a process of a search or a final training sets in its own environment, before CUDA and
torch start and read it: the GPUs it sees, and the CPU threads of a trial group's rank.

The decisions are the pure functions of slots.py; this module only applies them, so that no
command-line module changes the environment itself."""

from __future__ import annotations

import os

from hpsearch.workers.slots import pin_alone
from hpsearch.workers.startup import THREADS_ENV


def see_only(devices: str) -> None:
    """This process (and what it starts) sees only `devices` (CUDA_VISIBLE_DEVICES)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices


def share_cores(per_trial: int) -> None:
    """On a machine without GPUs, a trial group's ranks split the CPU cores between them."""
    threads = os.environ.get(THREADS_ENV) or str(max(1, (os.cpu_count() or 1) // per_trial))
    os.environ.update({THREADS_ENV: threads, "OMP_NUM_THREADS": threads})


def train_on_one_device(n_visible_gpus: int) -> str | None:
    """A final training is one process: on a host with several GPUs it takes the first (Trainer
    would otherwise spread it over all of them with DataParallel). The line that says so, or
    None where nothing changed."""
    devices, notice = pin_alone(n_visible_gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if devices is None:
        return None
    see_only(devices)
    return notice
