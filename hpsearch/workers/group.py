"""A worker whose trials each train on N devices: a group of N rank processes, started and watched.

The launcher starts the group with torch's elastic agent (what `torchrun --standalone` runs): each
rank gets RANK, LOCAL_RANK, WORLD_SIZE and a rendezvous on a free port of this host, and when one
rank exits with an error or is killed, the agent stops the others at once (a peer left waiting in a
collective would hang). The ranks are `hpsearch trial-rank` processes; rank 0 runs the worker loop
(hpsearch.trial.distributed says what the ranks share).

A rank that meets a bug of hpsearch (hpsearch.errors.is_hpsearch_bug) exits 3 with its traceback
written beside its reason: the launcher records both in the trial (which then does not count
toward the budget) and stops the worker with exit 3 rather than start a group that would meet it
again.

A trial whose group broke cannot end itself: its rank 0 was stopped with the others. The launcher
fails it with the reason of the rank that failed first (a rank's own reason file, or the signal
that killed it), within a second of the failure rather than after the heartbeat's grace period,
and starts a new group for the study's next trial. The devices are free once the agent returns:
the ranks are gone, and a rank whose launcher is killed ends itself (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna

from hpsearch.errors import ExitCode, HpsearchError, TrialBug
from hpsearch.storage import STORAGE_ENV, fail_for_rerun, fail_running_trials
from hpsearch.study import BUG, FAIL_REASON_ATTR, INTERRUPTED, TRACEBACK_ATTR

log = logging.getLogger("hpsearch.workers")

REASON_DIR_ENV = "HPSEARCH_GROUP_REASONS"  # where each rank writes why it failed
# The same group failure this many times in a row needs fixing, not another group.
MAX_REPEATED_GROUP_FAILURES = 3
# Messages of a rank whose peer died under it: the consequence of a failure, not its cause.
_PEER_LOST = (
    "gloo",
    "NCCL",
    "DistBackendError",
    "DistNetworkError",
    "Connection reset by peer",
    "Connection closed by peer",
)
# The signals the agent stops surviving ranks with: a rank ended by one of them is no culprit.
_STOPPED_BY_AGENT = (-signal.SIGTERM, -signal.SIGINT)


def run_group(
    study: optuna.Study,
    n_ranks: int,
    key: str,
    rank_args: list[str],
    url: str,
    timeout: float | None,
    report: Callable[[str], None],
) -> None:
    """Start groups of `n_ranks` ranks (`hpsearch trial-rank RANK_ARGS`) until one ends the study's
    budget, the deadline, or a repeated failure; Ctrl-C (SIGINT) reaches every rank once, and
    SIGTERM stops the group as Ctrl-C does (its trial recorded as interrupted, queued again)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    # hpsearch says what failed, in one line: the agent's own warnings repeat it at length, and
    # DDP's C++ warnings (find_unused_parameters, which Trainer sets for models with unused weights)
    # would be every rank's.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        _run_groups(study, n_ranks, key, rank_args, url, deadline, report)
    except SignalException as e:
        # The agent's handlers, which stay installed after a group ends, raise this wherever a
        # signal finds the process; the agent stopped the ranks with the same signal.
        if e.sigval == signal.SIGTERM:
            # Stopped on request, as by Ctrl-C; rank 0 died of SIGTERM before it could record it.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once, as everywhere else
            _requeue_interrupted(study, key)
        if e.sigval in (signal.SIGINT, signal.SIGTERM):
            raise KeyboardInterrupt from None
        raise HpsearchError(f"stopped by {signal.Signals(e.sigval).name}") from None


def _run_groups(
    study,
    n_ranks: int,
    key: str,
    rank_args: list[str],
    url: str,
    deadline: float | None,
    report: Callable[[str], None],
) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from hpsearch.trial.distributed import GROUP_ATTR, GROUP_KEY_ENV

    recent: list[str] = []
    while deadline is None or time.monotonic() < deadline:
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=n_ranks,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",
            max_restarts=0,
            monitor_interval=0.1,
        )
        args = [*rank_args]
        if deadline is not None:
            args += ["--timeout", f"{max(deadline - time.monotonic(), 0.001):.3f}"]
        with tempfile.TemporaryDirectory(prefix="hpsearch-group-") as reasons:
            # The ranks inherit this environment (the storage URL stays off their command lines).
            os.environ.update({GROUP_KEY_ENV: key, REASON_DIR_ENV: reasons, STORAGE_ENV: url})
            try:
                elastic_launch(config, sys.executable)("-m", "hpsearch.cli", "trial-rank", *args)
                return
            except ChildFailedError as e:
                rank, exitcode, reason = culprit(e.failures, Path(reasons), n_ranks)
                trace = rank_traceback(Path(reasons), rank)
        if exitcode == ExitCode.INTERRUPTED:
            raise KeyboardInterrupt
        if exitcode in (ExitCode.USER_ERROR, ExitCode.SPEC_ERROR):
            raise HpsearchError(reason)  # a mistake: another group would make it again
        if exitcode == ExitCode.BUG:
            # A bug of hpsearch: another group would meet it again. Rank 0 recorded its own; a
            # trial whose bug was another rank's is still running, and is recorded here.
            bug = {FAIL_REASON_ATTR: BUG, TRACEBACK_ATTR: trace or reason, "failed_rank": rank}
            fail_running_trials(study, GROUP_ATTR, key, bug)
            raise TrialBug(reason)
        failed = fail_running_trials(
            study, GROUP_ATTR, key, {FAIL_REASON_ATTR: reason, "failed_rank": rank}
        )
        what = f"trial {', '.join(map(str, failed))} failed" if failed else "the trial group failed"
        report(f"{what}: {reason}; starting a new group")
        recent.append(reason)
        if (
            len(recent) >= MAX_REPEATED_GROUP_FAILURES
            and len(set(recent[-MAX_REPEATED_GROUP_FAILURES:])) == 1
        ):
            raise HpsearchError(
                f"{MAX_REPEATED_GROUP_FAILURES} trial groups in a row failed with: {reason}; "
                "fix the cause and run again"
            )


def _requeue_interrupted(study: optuna.Study, key: str) -> None:
    """End this group's running trial as interrupted and queue its re-run (same parameters and
    seed) in one transaction, as rank 0 does on Ctrl-C; a trial rank 0 or the stale-trial sweep
    ended already is left alone."""
    from optuna.trial import TrialState

    from hpsearch.trial.distributed import GROUP_ATTR

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(GROUP_ATTR) == key:
            fail_for_rerun(study, trial, INTERRUPTED)


def culprit(failures: dict, reasons: Path, n_ranks: int) -> tuple[int, int, str]:
    """The rank that failed first, its exit code and why, from the agent's failures (rank ->
    ProcessFailure) and the ranks' reason files: a rank killed by a signal the agent does not send,
    then a rank whose reason is its own (not a lost peer), then any rank with a reason, then the
    first to fail."""

    def reason_of(rank: int) -> str | None:
        path = reasons / f"rank-{rank}.txt"
        return (path.read_text().strip() or None) if path.exists() else None

    ranked = []
    for order, (rank, failure) in enumerate(failures.items()):
        own = reason_of(rank)
        killed = failure.exitcode < 0 and failure.exitcode not in _STOPPED_BY_AGENT
        if killed:
            reason = (
                f"rank {rank} of {n_ranks} was killed by {signal.Signals(-failure.exitcode).name}"
            )
        else:
            reason = own or f"rank {rank} of {n_ranks} exited with code {failure.exitcode}"
        caused = own is not None and not any(marker in own for marker in _PEER_LOST)
        priority = 0 if killed else 1 if caused else 2 if own else 3
        ranked.append((priority, order, rank, failure.exitcode, reason))
    _, _, rank, exitcode, reason = min(ranked)
    return rank, exitcode, reason


def write_rank_reason(reason: str, traceback: str = "") -> None:
    """This rank's one-line reason for failing, for the launcher to record (see `culprit`), and
    the traceback of a bug of hpsearch it met (see `rank_traceback`)."""
    directory, rank = os.environ.get(REASON_DIR_ENV), os.environ.get("RANK")
    if directory and rank is not None:
        Path(directory, f"rank-{rank}.txt").write_text(reason.splitlines()[0] if reason else "")
        if traceback:
            Path(directory, f"rank-{rank}.traceback").write_text(traceback)


def rank_traceback(reasons: Path, rank: int) -> str | None:
    """The traceback a rank wrote with its reason (a bug of hpsearch it met), if any."""
    path = reasons / f"rank-{rank}.traceback"
    return path.read_text() if path.exists() else None


def run_rank(spec, url, storage, name: str, run_leader: Callable) -> None:
    """One rank of a trial group: join it, load the model and data, then on rank 0 take a start
    number for its sampler and run the worker loop (`run_leader(study, runner)`), and on the others
    train what rank 0 sends. A rank that fails
    writes its reason and raises (GroupBroken, HpsearchError) for the CLI to turn into its exit."""
    from hpsearch.storage import apply_heartbeat
    from hpsearch.study import open_study, seed_sampler
    from hpsearch.trial.distributed import GroupBroken, join_group, leave_group
    from hpsearch.workers.startup import build_runner

    group = join_group()
    try:
        runner = build_runner(spec, url, name, group)
        if not group.leads:
            runner.follow()
        else:
            apply_heartbeat(storage, spec.heartbeat)
            if spec.checkpoint is not None:
                # Each rank would need the checkpoint to resume (hpsearch.trial.runner).
                log.warning(
                    "checkpoint: the trials of a group (--gpus-per-trial %d) keep no checkpoint; "
                    "a lost one starts over",
                    group.size,
                )
            study, _ = open_study(storage, name, spec)
            runner.sampler_start = seed_sampler(study, spec.sampler)
            try:
                run_leader(study, runner)
            except HpsearchError:
                group.share(None)  # rank 0 gives up: the others stop with it
                raise
            group.share(None)  # the budget is spent or the deadline passed
    except GroupBroken as e:
        write_rank_reason(str(e))
        raise
    leave_group()
