"""How much GPU memory a trial takes, and whether K trials at once fit on one GPU.

Each trial on a GPU records the most memory PyTorch's allocator held from the device while it
trained (`peak_gpu_memory_mb`: torch.cuda.max_memory_reserved, reset when the trial starts). That
is reserved, not allocated, memory: what the allocator holds is what the other processes on the
GPU cannot have, its cached blocks included. `--trials-per-gpu K` is then checked at start against
the largest record of the study: K x (that peak + a process's CUDA context) must fit the GPU with
some headroom, or the run stops with one line that says how many fit.
"""

from __future__ import annotations

from typing import Any

from hpsearch.errors import HpsearchError

PEAK_GPU_MEMORY_ATTR = "peak_gpu_memory_mb"
CONTEXT_MB = 768  # a process's CUDA context, kernels and library handles, outside the allocator
HEADROOM = 0.9  # of the GPU's memory: fragmentation, and a trial with a larger batch than any yet
MB = 2**20


def reset_peak_gpu_memory() -> None:
    """Start counting this trial's peak afresh (a worker runs many trials)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_memory() -> dict[str, Any]:
    """The trial's record of its peak GPU memory in MiB; nothing on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {PEAK_GPU_MEMORY_ATTR: round(torch.cuda.max_memory_reserved() / MB)}


def gpu_total_mb(n_visible_gpus: int) -> tuple[int, str]:
    """The memory of the smallest GPU this process sees, in MiB, and its name."""
    import torch

    smallest = min(
        (torch.cuda.get_device_properties(i) for i in range(n_visible_gpus)),
        key=lambda p: p.total_memory,
    )
    return smallest.total_memory // MB, smallest.name


def recorded_peaks(trials) -> list[tuple[int, int]]:
    """(trial number, peak MiB) of every trial that recorded one."""
    return [
        (t.number, int(t.user_attrs[PEAK_GPU_MEMORY_ATTR]))
        for t in trials
        if PEAK_GPU_MEMORY_ATTR in t.user_attrs
    ]


def check_fit(k: int, peaks: list[tuple[int, int]], total_mb: int, gpu: str) -> str | None:
    """Raise HpsearchError if K trials of the largest recorded peak do not fit a GPU of
    `total_mb` MiB; else the line to say at start when no trial has recorded a peak yet (None
    when the fit was checked)."""
    if not peaks:
        return (
            f"--trials-per-gpu {k}: whether {k} trials fit on one GPU is unchecked until a "
            "trial has recorded its peak GPU memory"
        )
    number, peak = max(peaks, key=lambda record: record[1])
    per_trial = peak + CONTEXT_MB
    usable = HEADROOM * total_mb
    if k * per_trial <= usable:
        return None
    fits = int(usable // per_trial)
    advice = f"use --trials-per-gpu {fits} at most" if fits > 1 else "leave --trials-per-gpu out"
    raise HpsearchError(
        f"--trials-per-gpu {k}: {k} x ({_gib(peak)} peak of trial {number} + {_gib(CONTEXT_MB)} "
        f"per process) = {_gib(k * per_trial)} does not fit in {int(HEADROOM * 100)}% of the "
        f"{_gib(total_mb)} of {gpu}; {advice}"
    )


def _gib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB"
