"""Workers: where a search's trials run (in this process, a trial group, or supervised worker
processes), the loop that runs a study's trials in one process, what a worker process prepares
once and sets in its environment, the supervisor of local worker processes (one per GPU or N on
CPU), and the trial groups of a worker whose trials train on several devices."""

from hpsearch.workers.group import REASON_DIR_ENV, culprit, run_group, run_rank, write_rank_reason
from hpsearch.workers.loop import MAX_REPEATED_FAILURES, run_trials
from hpsearch.workers.process_env import see_only, share_cores, train_on_one_device
from hpsearch.workers.search import interrupt_once, name_worker, run_here, run_search
from hpsearch.workers.slots import Placement, WorkerSlot, pin_alone, place_workers, plan_slots
from hpsearch.workers.startup import THREADS_ENV, build_runner, warm_cache
from hpsearch.workers.supervisor import MAX_RESTARTS, WORKER_KEY_ENV, Supervisor, decide

__all__ = [
    "MAX_REPEATED_FAILURES",
    "MAX_RESTARTS",
    "REASON_DIR_ENV",
    "THREADS_ENV",
    "WORKER_KEY_ENV",
    "Placement",
    "Supervisor",
    "WorkerSlot",
    "build_runner",
    "culprit",
    "decide",
    "interrupt_once",
    "name_worker",
    "pin_alone",
    "place_workers",
    "plan_slots",
    "run_group",
    "run_here",
    "run_rank",
    "run_search",
    "run_trials",
    "see_only",
    "share_cores",
    "train_on_one_device",
    "warm_cache",
    "write_rank_reason",
]
