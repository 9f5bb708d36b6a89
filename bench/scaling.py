"""Scaling: 1, 2, 4, 8 hpsearch workers on one PostgreSQL study with a fixed-duration objective.

Each worker is a process running hpsearch's worker loop (`run_trials`: budget lock, heartbeats,
retrying storage) on an objective that samples the default search space and sleeps SECONDS. The
study's budget is trials_per_worker x workers. Throughput is trials per second from the first trial's start to the last one's end;
efficiency is throughput / (workers x one worker's throughput).

    python bench/scaling.py [--postgres URL] [--seconds 1.0] [--trials-per-worker 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpsearch.spec import load_spec_file, suggest_params
from hpsearch.storage import StudyLock, apply_heartbeat, open_storage, resolve_storage_url
from hpsearch.study import n_spent, open_study
from hpsearch.workers import run_trials


def work(url: str, name: str, n_trials: int, seconds: float, key: str, ready) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = _spec(n_trials)
    parsed = resolve_storage_url(url)
    storage = open_storage(parsed)
    apply_heartbeat(storage, spec.heartbeat)
    study, _ = open_study(storage, name, spec, worker_key=key)

    def objective(trial: optuna.Trial) -> float:
        suggest_params(trial, spec.search_space)
        time.sleep(seconds)
        return 0.0

    lock = StudyLock(parsed, name)
    ready.wait()  # every worker starts its first trial together, after all have opened the study
    run_trials(study, objective, n_trials, None, lock)


def _spec(n_trials: int):
    spec = load_spec_file(REPO / "studies" / "sentiment.yaml")
    return spec.model_copy(update={"budget": spec.budget.model_copy(update={"n_trials": n_trials})})


def measure(url: str, n_workers: int, per_worker: int, seconds: float) -> float:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    n_trials = per_worker * n_workers
    storage = open_storage(resolve_storage_url(url))
    open_study(storage, name, _spec(n_trials))  # created once, before the workers race to it
    ready = multiprocessing.Barrier(n_workers)
    processes = [multiprocessing.Process(target=work, args=(url, name, n_trials, seconds, f"w{k}", ready))
                 for k in range(n_workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert n_spent(trials) == n_trials == len(trials), "budget not met exactly"
    # From the first trial's start to the last one's end: the workers' start-up (opening the storage
    # and the study, which they do before meeting at the barrier) is left out.
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    optuna.delete_study(study_name=name, storage=storage)
    return n_trials / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=os.environ.get("HPSEARCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--trials-per-worker", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"objective sleeps {args.seconds}s; {args.trials_per_worker} trials per worker; "
          f"median of {args.repeats} runs\n")
    print("| workers | trials | throughput (trials/s), each run | median | speed-up | efficiency |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None
    for n in (int(w) for w in args.workers.split(",")):
        runs = [measure(args.postgres, n, args.trials_per_worker, args.seconds) for _ in range(args.repeats)]
        throughput = statistics.median(runs)
        base = base or throughput
        each = ", ".join(f"{r:.2f}" for r in runs)
        print(f"| {n} | {n * args.trials_per_worker} | {each} | {throughput:.2f} | {throughput / base:.2f}x | "
              f"{throughput / (n * base):.0%} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
