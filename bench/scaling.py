"""Scaling: N hpsearch workers on one PostgreSQL study with a fixed-duration objective.

Each worker is a process running hpsearch's worker loop (`run_trials`: budget lock, heartbeats,
retrying storage) on an objective that samples the default search space and sleeps SECONDS. The
study's budget is trials_per_worker x workers. Throughput is trials per second from the first
trial's start to the last one's end; efficiency is throughput / (workers x one worker's throughput).

What each run costs, measured in the same window (the first trial's start to the last one's end):
- database CPU: the PostgreSQL server's processes (the postmaster, its live children, and the
  children it reaped), read from /proc, so only for a server on this machine; as cores and as a
  share of the machine's busy time (/proc/stat);
- the workers' own CPU (each worker's process time), as cores;
- server connections: the peak number of this database's sessions in pg_stat_activity (sampled every
  50 ms), and per worker;
- statements and transactions per trial, counted in each worker by SQLAlchemy's engine events (every
  statement any of its engines sends: the storage, the heartbeat thread, the study lock);
- the study lock: how long each worker waited for it and held it; "lock busy" is the summed hold
  time over the window, the share of time some worker was holding the lock, the serial part.

    python bench/scaling.py [--postgres URL] [--server URL] [--seconds 1.0] [--trials-per-worker 8]
                            [--workers 1,2,4,8,16,32] [--repeats 3] [--json FILE]

--running 0,100,300: also the lock's hold and one read of the study with that many other trials
running (other workers' trials, 5 parameters each), with hpsearch's StudyCache and with Optuna's own
_CachedStorage, in the same run: what the study lock costs a study of many workers.

--server: a direct connection for the measurements, when the workers' URL goes through a pooler
(PgBouncer): pg_stat_activity then counts the server sessions the pooler keeps.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import re
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy
from optuna.distributions import FloatDistribution

# The hpsearch of this checkout, whichever one the interpreter has installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hpsearch.study.open as opening
from hpsearch.spec import load_spec_file, suggest_params
from hpsearch.storage import StudyLock, apply_heartbeat, cached, open_storage, resolve_storage_url
from hpsearch.study import n_spent, open_study, seed_sampler
from hpsearch.workers import run_trials

REPO = Path(__file__).resolve().parent.parent

TICK = os.sysconf("SC_CLK_TCK")


class TimedLock(StudyLock):
    """The study lock, timing each wait and each hold."""

    def __init__(self, *args):
        super().__init__(*args)
        self.waits: list[float] = []
        self.holds: list[float] = []

    def acquire(self) -> None:
        asked = time.perf_counter()
        super().acquire()
        self._got = time.perf_counter()
        self.waits.append(self._got - asked)

    def release(self) -> None:
        if self.held:
            self.holds.append(time.perf_counter() - self._got)
        super().release()


def count_statements() -> collections.Counter:
    """Count, in this process, every statement and transaction end any SQLAlchemy engine sends."""
    counts: collections.Counter = collections.Counter()

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        counts["statements"] += 1
        counts[f"sql: {_shape(statement)}"] += 1

    def on_end(conn):
        counts["transactions"] += 1

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", on_execute)
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "commit", on_end)
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "rollback", on_end)
    return counts


def _shape(statement: str) -> str:
    """A statement's kind and first table: 'SELECT trials', 'INSERT trial_params'."""
    words = statement.split()
    verb = words[0].upper() if words else "?"
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement, re.IGNORECASE)
    if verb == "SELECT" and table is None:
        return " ".join(words[:3])[:40]  # SELECT pg_advisory_lock(...), SELECT 1
    return f"{verb} {table.group(1) if table else ''}".strip()


def work(url: str, name: str, n_trials: int, seconds: float, key: str, ready, results) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = _spec(n_trials)
    parsed = resolve_storage_url(url)
    storage = open_storage(parsed)
    apply_heartbeat(storage, spec.heartbeat)
    study, _ = open_study(storage, name, spec)
    seed_sampler(study, spec.sampler)  # each worker its own start number, as hpsearch's workers

    def objective(trial: optuna.Trial) -> float:
        suggest_params(trial, spec.search_space)
        time.sleep(seconds)
        return 0.0

    lock = TimedLock(parsed, name)
    ready.wait()  # every worker starts its first trial together, after all have opened the study
    counts = count_statements()
    cpu = time.process_time()
    run_trials(study, objective, n_trials, None, lock)
    results.put(
        {
            "cpu_s": time.process_time() - cpu,
            "counts": dict(counts),
            "lock_waits": lock.waits,
            "lock_holds": lock.holds,
        }
    )


def _spec(n_trials: int):
    spec = load_spec_file(REPO / "studies" / "sentiment.yaml")
    return spec.model_copy(update={"budget": spec.budget.model_copy(update={"n_trials": n_trials})})


class ServerMeter:
    """The PostgreSQL server's CPU time and this database's session count, sampled on a thread."""

    def __init__(self, url: str):
        self._engine = sqlalchemy.create_engine(resolve_storage_url(url), pool_size=1)
        with self._engine.connect() as connection:
            backend = connection.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar()
        self._postmaster = _ppid(backend)  # None: the server is not on this machine
        self.samples: list[tuple[float, int, float | None, tuple[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._engine.dispose()

    def _sample(self) -> None:
        query = sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        with self._engine.connect() as connection:
            while not self._stop.is_set():
                sessions = connection.execute(query).scalar() - 1  # less this meter's own
                connection.rollback()
                self.samples.append((time.time(), sessions, self._server_cpu(), _machine_ticks()))
                self._stop.wait(0.05)

    def _server_cpu(self) -> float | None:
        if self._postmaster is None:
            return None
        total = 0
        for pid in [self._postmaster, *_children(self._postmaster)]:
            fields = _stat(pid)
            if fields is None:
                continue
            total += fields[11] + fields[12]  # utime, stime
            if pid == self._postmaster:
                total += fields[13] + fields[14]  # cutime, cstime: children already reaped
        return total / TICK

    def window(self, start: float, end: float) -> dict:
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples[-1:]
        first = max(
            (s for s in self.samples if s[0] <= start), default=self.samples[0], key=lambda s: s[0]
        )
        last = min(
            (s for s in self.samples if s[0] >= end), default=self.samples[-1], key=lambda s: s[0]
        )
        span = last[0] - first[0]
        busy = last[3][0] - first[3][0]
        out = {"peak_sessions": max(s[1] for s in inside), "machine_busy_cores": busy / TICK / span}
        if first[2] is not None:
            out["db_cores"] = (last[2] - first[2]) / span
            out["db_share_of_busy"] = (last[2] - first[2]) * TICK / busy if busy else 0.0
        return out


def _stat(pid: int) -> list[int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state is [0], ppid [1], utime [11].
    rest = text[text.rindex(")") + 2 :].split()
    return [0, *map(int, rest[1:])]


def _ppid(pid: int) -> int | None:
    fields = _stat(pid)
    return fields[1] if fields else None


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == parent:
            pids.append(int(entry.name))
    return pids


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def measure(url: str, server: str, n_workers: int, per_worker: int, seconds: float) -> dict:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    n_trials = per_worker * n_workers
    storage = open_storage(resolve_storage_url(url))
    open_study(storage, name, _spec(n_trials))  # created once, before the workers race to it
    storage.engine.dispose()  # its sessions would count as the workers'
    ready = multiprocessing.Barrier(n_workers)
    results = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(
            target=work, args=(url, name, n_trials, seconds, f"w{k}", ready, results)
        )
        for k in range(n_workers)
    ]
    with ServerMeter(server) as meter:
        for p in processes:
            p.start()
        reports = [results.get() for _ in processes]
        for p in processes:
            p.join()
        time.sleep(0.05)  # one more sample after the end
    if any(p.exitcode != 0 for p in processes):
        raise SystemExit(f"a worker failed: exit codes {[p.exitcode for p in processes]}")
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert n_spent(trials) == n_trials == len(trials), "budget not met exactly"
    # From the first trial's start to the last one's end: the workers' start-up (opening the storage
    # and the study, which they do before meeting at the barrier) is left out.
    start = min(t.datetime_start for t in trials).timestamp()
    end = max(t.datetime_complete for t in trials).timestamp()
    wall = end - start
    optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()
    counts: collections.Counter = collections.Counter()
    for report in reports:
        counts.update(report["counts"])
    waits = [w for r in reports for w in r["lock_waits"]]
    holds = [h for r in reports for h in r["lock_holds"]]
    return {
        "workers": n_workers,
        "trials": n_trials,
        "wall_s": wall,
        "throughput": n_trials / wall,
        "worker_cores": sum(r["cpu_s"] for r in reports) / wall,
        "statements_per_trial": counts["statements"] / n_trials,
        "transactions_per_trial": counts["transactions"] / n_trials,
        "statement_kinds_per_trial": {
            k[5:]: v / n_trials for k, v in counts.most_common() if k.startswith("sql: ")
        },
        "lock_wait_ms_median": 1000 * statistics.median(waits),
        "lock_wait_ms_p95": 1000 * _p95(waits),
        "lock_hold_ms_median": 1000 * statistics.median(holds),
        "lock_hold_ms_p95": 1000 * _p95(holds),
        "lock_busy": sum(holds) / wall,
        **meter.window(start, end),
    }


def hold_with_running(url: str, n_running: int, optuna_cache: bool) -> dict:
    """One worker's 10 trials (no sleep) while n_running other trials are RUNNING in the study."""
    # open_study puts the study behind hpsearch's StudyCache; for Optuna's own cache it is told
    # to leave the storage as it is (load_study then wraps it in _CachedStorage).
    opening.cached = (lambda storage: storage) if optuna_cache else cached
    try:
        lock, reads = _ten_trials_beside_running(url, n_running)
    finally:
        opening.cached = cached
    return {
        "running": n_running,
        "cache": "Optuna's _CachedStorage" if optuna_cache else "StudyCache",
        "lock_hold_ms_median": 1000 * statistics.median(lock.holds),
        "read_ms_median": 1000 * statistics.median(reads),
    }


def _ten_trials_beside_running(url: str, n_running: int) -> tuple[TimedLock, list[float]]:
    spec = _spec(n_running + 1000)
    parsed = resolve_storage_url(url)
    storage = open_storage(parsed)
    apply_heartbeat(storage, spec.heartbeat)
    name = f"running-{uuid.uuid4().hex[:8]}"
    study, _ = open_study(storage, name, spec)
    seed_sampler(study, spec.sampler)
    for _ in range(n_running):
        trial_id = storage.create_new_trial(study._study_id)
        for param in "abcde":
            storage.set_trial_param(trial_id, param, 0.5, FloatDistribution(0, 1))
    reads = []
    for _ in range(10):
        asked = time.perf_counter()
        study.get_trials(deepcopy=False)
        reads.append(time.perf_counter() - asked)
    lock = TimedLock(parsed, name)
    done = []

    def objective(trial: optuna.Trial) -> float:
        suggest_params(trial, spec.search_space)
        done.append(trial.number)
        if len(done) == 10:
            trial.study.stop()
        return 0.0

    run_trials(study, objective, n_running + 1000, None, lock)
    optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()
    return lock, reads


def _p95(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.95 * len(values)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "HPSEARCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--server",
        help="a direct URL to the same server, for the measurements (default: --postgres)",
    )
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--trials-per-worker", type=int, default=8)
    parser.add_argument(
        "--workers", default="1,2,4,8,16,32", help="worker counts; an empty string skips"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--running", help="e.g. 0,100,300: the lock's hold with that many trials running"
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    server = args.server or args.postgres
    print(
        f"objective sleeps {args.seconds}s; {args.trials_per_worker} trials per worker; "
        f"median of {args.repeats} runs; {os.cpu_count()} cores\n"
    )
    print(
        "| workers | trials | throughput (trials/s), each run | median | speed-up | efficiency | "
        "DB cores (share of busy CPU) | worker cores | peak sessions (per worker) | statements / "
        "transactions per trial | lock wait median / p95 (ms) | lock hold median / p95 (ms) "
        "| lock busy |"
    )
    print("| --- " * 13 + "|")
    base = None
    every: list[dict] = []
    for n in (int(w) for w in args.workers.split(",") if w):
        runs = [
            measure(args.postgres, server, n, args.trials_per_worker, args.seconds)
            for _ in range(args.repeats)
        ]
        every.extend(runs)
        mid = sorted(runs, key=lambda r: r["throughput"])[len(runs) // 2]  # the median run, whole
        base = base or mid["throughput"]
        each = ", ".join(f"{r['throughput']:.2f}" for r in runs)
        db = (
            f"{mid['db_cores']:.2f} ({mid['db_share_of_busy']:.0%})"
            if "db_cores" in mid
            else "n/a (remote)"
        )
        print(
            f"| {n} | {mid['trials']} | {each} | {mid['throughput']:.2f} "
            f"| {mid['throughput'] / base:.2f}x | {mid['throughput'] / (n * base):.0%} | {db} "
            f"| {mid['worker_cores']:.2f} | "
            f"{mid['peak_sessions']} ({mid['peak_sessions'] / n:.1f}) | "
            f"{mid['statements_per_trial']:.1f} / {mid['transactions_per_trial']:.1f} | "
            f"{mid['lock_wait_ms_median']:.1f} / {mid['lock_wait_ms_p95']:.1f} | "
            f"{mid['lock_hold_ms_median']:.1f} / {mid['lock_hold_ms_p95']:.1f} "
            f"| {mid['lock_busy']:.0%} |",
            flush=True,
        )
    kinds = every[0]["statement_kinds_per_trial"] if every else {}
    if kinds:
        print(
            "\nstatements per trial by kind (first run, "
            + f"{every[0]['workers']} worker(s)): "
            + ", ".join(f"{k} {v:.1f}" for k, v in kinds.items())
        )
    holds = []
    if args.running:
        print(
            "\n| other trials running | study cache | lock hold, median (ms) "
            "| one read of the study, median (ms) |"
        )
        print("| --- | --- | --- | --- |")
        for n in (int(r) for r in args.running.split(",")):
            for optuna_cache in (True, False):
                row = hold_with_running(args.postgres, n, optuna_cache)
                holds.append(row)
                print(
                    f"| {n} | {row['cache']} | {row['lock_hold_ms_median']:.1f} "
                    f"| {row['read_ms_median']:.1f} |",
                    flush=True,
                )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "trials_per_worker": args.trials_per_worker,
                    "runs": every,
                    "hold_with_running": holds,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
