"""The effective batch: the examples one optimizer step sees, per device x devices x accumulation.

A trial records it (EFFECTIVE_BATCH_ATTR) as it really was, counting every device the step spans:
the ranks of a DDP trial group (WORLD_SIZE_ATTR), or the GPUs of one process (DataParallel, which
hpsearch never starts, but Trainer would for a process that sees several GPUs). A final training
(`hpsearch train`) of a trial that trained on N devices, run on fewer, keeps that effective batch
by accumulating more steps: the same examples per optimizer step, the same per-device memory.

Pure arithmetic, tested with fake device counts.
"""

from __future__ import annotations

from hpsearch.errors import HpsearchError

WORLD_SIZE_ATTR = "world_size"  # trial user attribute: the processes (devices) of a DDP trial


def effective_batch(
    per_device: int, accumulation: int, n_processes: int = 1, gpus_per_process: int = 1
) -> int:
    """Examples per optimizer step: `per_device` on each of `n_processes` x `gpus_per_process`
    devices, `accumulation` steps of them. Counts below 1 (Trainer's world_size 0 or n_gpu 0 on a
    CPU) count as one device."""
    return per_device * accumulation * max(1, n_processes) * max(1, gpus_per_process)


def reproducing_accumulation(accumulation: int, trial_devices: int, devices: int = 1) -> int:
    """The accumulation that gives a trial's effective batch on `devices` with its per-device batch:
    the trial's `accumulation` x `trial_devices` / `devices`. An HpsearchError when that does not
    divide (more devices than the trial's steps can be spread over)."""
    total = accumulation * max(1, trial_devices)
    if total % devices:
        raise HpsearchError(
            f"trial trained on {trial_devices} devices with accumulation {accumulation}: its "
            f"effective batch cannot be reproduced on {devices} devices"
        )
    return total // devices
