"""A trial trained by several processes at once (DistributedDataParallel): what its ranks share.

A worker with `gpus_per_trial: N` is a group of N processes (workers/group.py starts them with
torch's elastic agent) that lives for many trials. Rank 0 is the worker Optuna sees: it takes the
study's next trial, samples its parameters and sends them to the other ranks; every rank then
fine-tunes the same configuration with the same seed on its share of each batch (Trainer's DDP). At
each evaluation rank 0 reports the metric to Optuna and sends its prune decision, so that every
rank stops at the same step (the pattern of Optuna's TorchDistributedTrial). Only rank 0 writes to
the storage: the trial's record, cost and best model are written once.

The messages travel on a gloo group of their own: NCCL moves tensors between GPUs, not Python
objects, and a rank may wait for its next trial (while the budget's last slots are held by other
workers' trials) far longer than a training collective should be allowed to hang.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

GROUP_KEY_ENV = "HPSEARCH_GROUP_KEY"  # set by the launcher: the group's name in its trials' records
GROUP_ATTR = "group"  # a trial's user attribute: the group that trains it
RANKS_ATTR = "ranks"  # a trial's user attribute: what each rank trained, checked to agree
# How long a rank waits for rank 0's next message: as long as a study may wait for a free slot.
CONTROL_TIMEOUT = timedelta(days=7)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class GroupBroken(BaseException):
    """This rank's part of a trial failed, so the group cannot go on (the other ranks are waiting
    in a collective that will never complete).

    A BaseException, not an Exception, so that Optuna leaves the trial RUNNING rather than failing
    it with this rank's view: the launcher fails it with the reason of the rank that failed first
    (workers/group.py), then starts a new group for the next trial.
    """


@dataclass
class Group:
    """This process's place in its trial group."""

    rank: int
    size: int
    key: str
    control: Any  # the gloo process group for messages

    @property
    def leads(self) -> bool:
        return self.rank == 0

    def share(self, message: Any = None) -> Any:
        """Rank 0's `message`, on every rank: rank 0 passes it, the others wait for it."""
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, item: Any) -> list[Any]:
        """Every rank's `item`, in rank order, on every rank."""
        items: list[Any] = [None] * self.size
        dist.all_gather_object(items, item, group=self.control)
        return items

    def first_error(self, error: str | None) -> str | None:
        """The lowest rank's error, or None if no rank had one: every rank then decides alike."""
        return next((e for e in self.gather(error) if e), None)


def join_group() -> Group:
    """Join the group the elastic agent started this process in (RANK, WORLD_SIZE, LOCAL_RANK and
    the rendezvous address are in the environment): NCCL between GPUs, gloo on CPUs."""
    _die_with_parent()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return Group(dist.get_rank(), dist.get_world_size(), os.environ.get(GROUP_KEY_ENV, ""), control)


def group_arguments() -> dict[str, Any]:
    """TrainingArguments a rank of a group needs: on CPUs, use_cpu, without which Trainer ignores
    the gloo group and each rank would train alone on all the data."""
    if dist.is_available() and dist.is_initialized() and not torch.cuda.is_available():
        return {"use_cpu": True}
    return {}


def leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _die_with_parent() -> None:
    """End this rank when its launcher dies (kill -9 of the worker, its node lost): else the rank
    would hold its GPU and wait for messages that never come."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the line above: nobody is left to wait for
        os.kill(os.getpid(), signal.SIGKILL)


class LeadingTrial:
    """Rank 0's trial as the pruning callback sees it: it reports, decides, and tells the others."""

    def __init__(self, trial, group: Group):
        self.trial, self.group = trial, group

    def report(self, value: float, step: int) -> None:
        self.trial.report(value, step=step)

    def should_prune(self) -> bool:
        return self.group.share(self.trial.should_prune())


class FollowingTrial:
    """Another rank's trial: rank 0 reports for the group; the prune decision is rank 0's."""

    def __init__(self, group: Group):
        self.group = group

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return self.group.share()


def rank_outcome(group: Group, params: dict, seed: int, fitting) -> dict[str, Any]:
    """What this rank trained and where it stopped: every rank's must agree."""
    callback = fitting.callback
    value = callback.last_metrics.get(callback.metric_key)
    return {
        "rank": group.rank,
        "pid": os.getpid(),
        "params": params,
        "seed": seed,
        "steps": fitting.trainer.state.global_step,
        "evaluations": callback.n_evals,
        "pruned": callback.pruned,
        "value": None if value is None else round(value, 6),
    }


def disagreement(outcomes: list[dict[str, Any]]) -> str | None:
    """Why the ranks' outcomes do not describe one trial, or None if they do."""
    first = outcomes[0]
    for outcome in outcomes[1:]:
        for key in ("params", "seed", "steps", "evaluations", "pruned"):
            if outcome[key] != first[key]:
                return (
                    f"the ranks disagree on {key}: rank 0 has {first[key]}, "
                    f"rank {outcome['rank']} has {outcome[key]}"
                )
    return None
