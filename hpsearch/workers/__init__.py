"""Workers: the loop that runs a study's trials in one process, what a worker process prepares once,
and the supervisor of local worker processes (one per GPU or N on CPU)."""

from hpsearch.workers.loop import MAX_REPEATED_FAILURES, run_trials
from hpsearch.workers.slots import WorkerSlot, plan_slots
from hpsearch.workers.startup import (
    CACHE_ENV,
    THREADS_ENV,
    build_runner,
    cache_dir,
    load_data,
    quiet_libraries,
    warm_cache,
)
from hpsearch.workers.supervisor import MAX_RESTARTS, WORKER_KEY_ENV, Supervisor, decide

__all__ = [
    "CACHE_ENV", "MAX_REPEATED_FAILURES", "MAX_RESTARTS", "THREADS_ENV", "WORKER_KEY_ENV", "Supervisor",
    "WorkerSlot", "build_runner", "cache_dir", "decide", "load_data", "plan_slots", "quiet_libraries", "run_trials",
    "warm_cache",
]
