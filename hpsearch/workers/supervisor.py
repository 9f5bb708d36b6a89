"""Local workers: one process per slot (slots.py), started, watched and restarted.

The parent starts each worker as `hpsearch worker --supervised` in its own session (so a terminal's
Ctrl-C reaches only the parent, which forwards it once), restarts a worker that crashed (decided on
its exit code) a bounded number of times, and shows the study's progress by polling the storage. A
run's deadline (`run --timeout`) reaches each worker it starts as the seconds left then.
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

from hpsearch.errors import ExitCode, HpsearchError
from hpsearch.workers.slots import WorkerSlot

MAX_RESTARTS = 3
WORKER_KEY_ENV = "HPSEARCH_WORKER_KEY"  # tells a supervised worker which slot it is
STOP_GRACE_S = 120  # a worker given Ctrl-C records its trial as interrupted, then exits
POLL_INTERVAL_S = 1.0


DONE, GIVE_UP, RESTART = "done", "give up", "restart"


def decide(returncode: int) -> str:
    """What to do about a worker that exited, from its exit code alone (hpsearch.errors.ExitCode).

    A mistake (1, 2), a bug of hpsearch met in a trial (3) or an interrupt (130) would happen
    again: give up. A crash (70), a death by a signal (negative: SIGKILL, the OOM killer) or any
    other code may not: restart.
    """
    if returncode == ExitCode.OK:
        return DONE
    if returncode in (
        ExitCode.USER_ERROR,
        ExitCode.SPEC_ERROR,
        ExitCode.BUG,
        ExitCode.INTERRUPTED,
    ):
        return GIVE_UP
    return RESTART


@dataclass
class _Worker:
    slot: WorkerSlot
    log: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    finished: bool = False
    gave_up: str | None = None


class Supervisor:
    def __init__(
        self,
        slots: list[WorkerSlot],
        worker_args: list[str],
        env: dict[str, str],
        log_dir: Path,
        report: Callable[[str], None],
        on_poll: Callable[[], None],
        *,
        deadline: float | None = None,
    ):
        """`deadline`: the run's end (time.monotonic()), after which no worker starts a trial; each
        worker started or restarted is told the seconds left (`--timeout`)."""
        self.worker_args = worker_args
        self.deadline = deadline
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
            raise HpsearchError(
                f"{len(failed)} of {len(self.workers)} workers gave up ({details}); logs in "
                f"{failed[0].log.parent}"
            )

    def _start(self, worker: _Worker) -> None:
        args = [*self.worker_args]
        if self.deadline is not None:
            args += ["--timeout", f"{max(self.deadline - time.monotonic(), 0.001):.3f}"]
        with open(worker.log, "a") as log:
            worker.process = subprocess.Popen(
                [sys.executable, "-m", "hpsearch.cli", *args],
                env={
                    **os.environ,
                    **self.env,
                    **worker.slot.env,
                    WORKER_KEY_ENV: worker.slot.label,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _check(self, worker: _Worker) -> None:
        if worker.finished or worker.gave_up or worker.process.poll() is None:
            return
        code = worker.process.returncode
        verdict = decide(code)
        if verdict == DONE:
            worker.finished = True
            return
        last = _last_line(worker.log)
        reason = f"exit code {code}" + (f" ({last})" if last else "")
        if verdict == GIVE_UP:
            worker.gave_up = (
                reason  # a problem to fix first, or a deliberate stop: a restart would repeat it
            )
        elif worker.restarts < MAX_RESTARTS:
            worker.restarts += 1
            self.report(
                f"worker {worker.slot.label} died with {reason}; restarting "
                f"({worker.restarts}/{MAX_RESTARTS})"
            )
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
        lines = [
            line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
