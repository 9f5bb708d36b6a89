"""Which workers run where: in this process, as a trial group here, or as supervised worker
processes, one per GPU (or per group of GPUs, for trials on several; or K per GPU with
--trials-per-gpu K, where one small model's trial leaves a GPU mostly idle) pinned with
CUDA_VISIBLE_DEVICES, or N on the CPU cores.

No trial trains under DataParallel: a process that trains alone sees one GPU (or none), and one
that sees several is a rank of a DDP trial group. So a host with several GPUs and no --gpus runs
one worker per GPU, as `--gpus all` does, and says so in one line.

Pure functions of what the machine shows and the flags, tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpsearch.errors import HpsearchError
from hpsearch.workers.startup import THREADS_ENV


@dataclass(frozen=True)
class WorkerSlot:
    label: str
    env: dict[str, str]


@dataclass(frozen=True)
class Placement:
    """Where a run's or a worker's trials train."""

    mode: str
    """"alone": in this process, on one device; "group": in a trial group of rank processes
    started from this one; "workers": in supervised worker processes, one per slot."""
    slots: tuple[WorkerSlot, ...] = ()
    """The worker processes of mode "workers"."""
    devices: str | None = None
    """The CUDA_VISIBLE_DEVICES this process sets before CUDA starts ("" hides every GPU); None
    leaves what it sees."""
    notice: str | None = None
    """One line to say at start: a choice the user did not spell out."""


def place_workers(
    gpus: str | None,
    n_workers: int | None,
    gpus_per_trial: int | None,
    n_visible_gpus: int,
    n_cores: int,
    visible_devices: str | None = None,
    *,
    supervised: bool = False,
    trials_per_gpu: int = 1,
) -> Placement:
    """Where to train, from the flags (--gpus, --workers, --gpus-per-trial, --trials-per-gpu) and
    the GPUs this process sees. `--gpus`, several `--workers` or several trials per GPU are planned
    by plan_slots; `--workers 1` trains here on the CPU. Otherwise: one worker per GPU (per
    `gpus_per_trial` GPUs) when the host has room for several, else this process alone or as one
    trial group. A `supervised` worker was pinned by its supervisor: it trains here, on its first
    GPU(s) should it see more.
    """
    per_trial = gpus_per_trial or 1
    mode_here = "group" if gpus_per_trial else "alone"
    if trials_per_gpu != 1 and not supervised:
        slots = plan_slots(
            gpus or "all",
            n_workers,
            n_visible_gpus,
            n_cores,
            visible_devices,
            gpus_per_trial,
            trials_per_gpu=trials_per_gpu,
        )
        notice = (
            f"this machine shows {n_visible_gpus} GPUs: {trials_per_gpu} workers per GPU (as "
            f"--gpus all --trials-per-gpu {trials_per_gpu})"
            if gpus is None and n_visible_gpus > 1
            else None
        )
        return Placement("workers", tuple(slots), notice=notice)
    if gpus is not None or (n_workers or 1) > 1:
        slots = plan_slots(
            gpus, n_workers, n_visible_gpus, n_cores, visible_devices, gpus_per_trial
        )
        return Placement("workers", tuple(slots))
    if n_workers == 1 or n_visible_gpus == 0:
        # --workers means CPU workers; hiding the GPUs keeps one from training on all of them.
        return Placement(mode_here, devices="" if n_visible_gpus else None)
    if n_visible_gpus < per_trial:
        raise HpsearchError(
            f"--gpus-per-trial {per_trial}: this machine shows {n_visible_gpus} GPU"
            f"{'s' if n_visible_gpus > 1 else ''}; ask for at most {n_visible_gpus}"
        )
    physical = _physical(n_visible_gpus, visible_devices)
    n_groups = n_visible_gpus // per_trial
    used = n_groups * per_trial
    idle = _idle(physical[used:])
    if n_groups == 1 or supervised:
        if n_visible_gpus == per_trial:
            return Placement(mode_here)
        devices = ",".join(physical[:per_trial])
        notice = (
            None
            if supervised
            else (f"this machine shows {n_visible_gpus} GPUs: training on GPUs {devices}{idle}")
        )
        return Placement(mode_here, devices=devices, notice=notice)
    slots = plan_slots(
        ",".join(map(str, range(used))),
        None,
        n_visible_gpus,
        n_cores,
        visible_devices,
        gpus_per_trial,
    )
    if gpus_per_trial:
        what = f"one worker per {per_trial} GPUs (as --gpus all --gpus-per-trial {per_trial})"
    else:
        what = "one worker per GPU (as --gpus all); --gpus 0 runs one"
    return Placement(
        "workers", tuple(slots), notice=f"this machine shows {n_visible_gpus} GPUs: {what}{idle}"
    )


def pin_alone(
    n_visible_gpus: int, visible_devices: str | None = None
) -> tuple[str | None, str | None]:
    """For a process that trains alone (`hpsearch train`): the CUDA_VISIBLE_DEVICES that leaves it
    one GPU, and the line that says so; (None, None) when it sees one GPU or none."""
    if n_visible_gpus <= 1:
        return None, None
    first = _physical(n_visible_gpus, visible_devices)[0]
    return first, (
        f"this machine shows {n_visible_gpus} GPUs: training on GPU {first} alone "
        "(one process, no DataParallel)"
    )


def _physical(n_visible_gpus: int, visible_devices: str | None) -> list[str]:
    """The physical GPU behind each index this process sees (its own CUDA_VISIBLE_DEVICES)."""
    if visible_devices:
        return visible_devices.split(",")
    return [str(i) for i in range(n_visible_gpus)]


def _idle(left_over: list[str]) -> str:
    if not left_over:
        return ""
    if len(left_over) == 1:
        return f"; GPU {left_over[0]} stays idle"
    return f"; GPUs {','.join(left_over)} stay idle"


def plan_slots(
    gpus: str | None,
    n_workers: int | None,
    n_visible_gpus: int,
    n_cores: int,
    visible_devices: str | None = None,
    gpus_per_trial: int | None = None,
    *,
    trials_per_gpu: int = 1,
) -> list[WorkerSlot]:
    """One slot per GPU named in `gpus` ("all" or "0,2,3"), or `n_workers` CPU slots; with
    `gpus_per_trial` N, one slot per N GPUs named (in their order), or N CPU processes per slot;
    with `trials_per_gpu` K, K slots per GPU, pinned alike (each its own worker process, which
    takes its own sampler start number: hpsearch.study.seed_sampler).

    `visible_devices` is the parent's own CUDA_VISIBLE_DEVICES: GPU i then means its i-th entry.
    Each process gets an equal share of the CPU cores for its torch threads.
    """
    per_trial = gpus_per_trial or 1
    _check_trials_per_gpu(trials_per_gpu, n_workers, per_trial, n_visible_gpus)
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
    physical = _physical(n_visible_gpus, visible_devices)
    threads = str(max(1, n_cores // (len(indexes) * trials_per_gpu)))
    groups = [indexes[k : k + per_trial] for k in range(0, len(indexes), per_trial)]
    return [
        WorkerSlot(
            "gpu" + "-".join(map(str, group)) + (f".{k}" if trials_per_gpu > 1 else ""),
            {
                "CUDA_VISIBLE_DEVICES": ",".join(physical[i] for i in group),
                THREADS_ENV: threads,
                "OMP_NUM_THREADS": threads,
            },
        )
        for group in groups
        for k in range(trials_per_gpu)
    ]


def _check_trials_per_gpu(k: int, n_workers: int | None, per_trial: int, n_visible: int) -> None:
    """--trials-per-gpu K shares GPUs: it has no meaning with CPU workers, nor with trials that
    spread over several GPUs, nor on a machine without GPUs."""
    if k < 1:
        raise HpsearchError(f"--trials-per-gpu: expected 1 or more trials per GPU, got {k}")
    if k == 1:
        return
    if n_workers is not None:
        raise HpsearchError(
            f"--trials-per-gpu {k} shares each GPU between {k} workers; --workers N starts CPU "
            "workers: give one of them"
        )
    if per_trial > 1:
        raise HpsearchError(
            f"--trials-per-gpu {k} puts {k} trials on each GPU; --gpus-per-trial {per_trial} (or "
            f"resources.gpus_per_trial) spreads each trial over {per_trial} GPUs: give one of them"
        )
    if n_visible == 0:
        raise HpsearchError(
            f"--trials-per-gpu {k}: no GPU is visible here; use --workers N to run N workers on CPU"
        )
