"""Local workers: one process per GPU, pinned with CUDA_VISIBLE_DEVICES, or N processes on CPU.

The parent starts each worker as `hpsearch worker --supervised` in its own session (so a terminal's
Ctrl-C reaches only the parent, which forwards it once), restarts a worker that crashed a bounded
number of times, and shows the study's progress by polling the storage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpsearch.errors import HpsearchError

MAX_RESTARTS = 3
WORKER_KEY_ENV = "HPSEARCH_WORKER_KEY"  # tells a supervised worker which slot it is
STOP_GRACE_S = 120  # a worker given Ctrl-C records its trial as interrupted, then exits
POLL_INTERVAL_S = 1.0


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
        return [WorkerSlot(f"cpu{k}", {"CUDA_VISIBLE_DEVICES": "", "HPSEARCH_THREADS": threads,
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
    return [WorkerSlot(f"gpu{i}", {"CUDA_VISIBLE_DEVICES": physical[i], "HPSEARCH_THREADS": threads,
                                   "OMP_NUM_THREADS": threads}) for i in indexes]


@dataclass
class _Worker:
    slot: WorkerSlot
    log: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    finished: bool = False
    gave_up: str | None = None


class Supervisor:
    def __init__(self, slots: list[WorkerSlot], worker_args: list[str], env: dict[str, str], log_dir: Path,
                 report: Callable[[str], None], on_poll: Callable[[], None]):
        self.worker_args = worker_args
        self.env = env
        self.report = report
        self.on_poll = on_poll
        log_dir.mkdir(parents=True, exist_ok=True)
        self.workers = [_Worker(slot, log_dir / f"worker-{slot.label}.log") for slot in slots]

    def run(self) -> None:
        """Until every worker has exited 0 or given up; Ctrl-C stops them all and re-raises."""
        try:
            for worker in self.workers:
                self._start(worker)
            while not all(w.finished or w.gave_up for w in self.workers):
                time.sleep(POLL_INTERVAL_S)
                for worker in self.workers:
                    self._check(worker)
                self.on_poll()
        except KeyboardInterrupt:
            self._stop_all()
            raise
        self.on_poll()
        failed = [w for w in self.workers if w.gave_up]
        if failed:
            details = "; ".join(f"{w.slot.label}: {w.gave_up}" for w in failed)
            raise HpsearchError(f"{len(failed)} of {len(self.workers)} workers gave up ({details}); logs in {failed[0].log.parent}")

    def _start(self, worker: _Worker) -> None:
        with open(worker.log, "a") as log:
            worker.process = subprocess.Popen(
                [sys.executable, "-m", "hpsearch.cli", *self.worker_args],
                env={**os.environ, **self.env, **worker.slot.env, WORKER_KEY_ENV: worker.slot.label}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def _check(self, worker: _Worker) -> None:
        if worker.finished or worker.gave_up or worker.process.poll() is None:
            return
        code = worker.process.returncode
        if code == 0:
            worker.finished = True
            return
        reason = f"exit code {code}" + (f" ({_last_line(worker.log)})" if _last_line(worker.log) else "")
        if _last_line(worker.log).startswith("Error:"):
            worker.gave_up = reason  # a deliberate stop (a problem to fix); restarting would repeat it
        elif worker.restarts < MAX_RESTARTS:
            worker.restarts += 1
            self.report(f"worker {worker.slot.label} died with {reason}; restarting ({worker.restarts}/{MAX_RESTARTS})")
            self._start(worker)
        else:
            worker.gave_up = f"died {MAX_RESTARTS + 1} times, last with {reason}"
            self.report(f"worker {worker.slot.label} gave up: {worker.gave_up}")

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
