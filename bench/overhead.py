"""Orchestration overhead: time per trial when training does nothing, hpsearch against bare Optuna.

Both sides run the same objective: sample the default study's search space and return at once.
- bare: `optuna.create_study(storage=URL).optimize(objective, n_trials=N)`, what a hand-written loop
  does (no heartbeat, no budget lock).
- hpsearch: its worker loop, `run_trials`, on hpsearch's storage (heartbeats, retries through
  outages), under the study-wide budget lock, with the trial's record (seed, host, pid, device) and
  the study note, as a real worker runs it.

    python bench/overhead.py [--n-trials 200] [--repeats 3] [--postgres URL] [--parts]

Prints a Markdown table of the milliseconds per trial for each storage (each run and the median),
and with --parts a second one: the cost of each step hpsearch adds, timed alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

# The hpsearch of this checkout, whichever one the interpreter has installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpsearch.spec import load_spec_file, suggest_params
from hpsearch.storage import StudyLock, apply_heartbeat, open_storage, resolve_storage_url
from hpsearch.study import make_pruner, make_sampler, open_study
from hpsearch.trial import record_start
from hpsearch.views import NoteWriter, register_worker
from hpsearch.workers import run_trials

REPO = Path(__file__).resolve().parent.parent

optuna.logging.set_verbosity(optuna.logging.ERROR)


def bare(url: str, spec, n_trials: int) -> float:
    # The same sampler and pruner, built the same way: only the orchestration differs. (Hyperband
    # alone costs ~3 study look-ups per trial, so a bare loop with Optuna's default pruner would
    # not be comparable.)
    study = optuna.create_study(
        storage=url,
        study_name=f"bare-{uuid.uuid4().hex[:8]}",
        sampler=make_sampler(spec.sampler),
        pruner=make_pruner(spec.pruner),
        direction="maximize",
    )
    started = time.perf_counter()
    study.optimize(lambda trial: _noop(trial, spec), n_trials=n_trials)
    seconds = time.perf_counter() - started
    optuna.delete_study(study_name=study.study_name, storage=url)
    return seconds / n_trials


def hpsearch(url: str, spec, n_trials: int) -> float:
    parsed = resolve_storage_url(url)
    storage = open_storage(parsed)
    name = f"hp-{uuid.uuid4().hex[:8]}"
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"n_trials": n_trials})})
    apply_heartbeat(storage, spec.heartbeat)
    study, _ = open_study(storage, name, spec)
    register_worker(study, "cpu", spec.objective.eval_key)
    note = NoteWriter(study, spec)

    def objective(trial: optuna.Trial) -> float:
        record_start(
            trial, spec.seed + trial.number, "cpu"
        )  # the trial's record, as TrialRunner writes it
        return _noop(trial, spec)

    started = time.perf_counter()
    run_trials(study, objective, n_trials, None, StudyLock(parsed, name), note)
    seconds = time.perf_counter() - started
    optuna.delete_study(study_name=name, storage=storage)
    return seconds / n_trials


def _noop(trial: optuna.Trial, spec) -> float:
    suggest_params(trial, spec.search_space)
    return 0.0


def parts(url: str, spec, n_calls: int = 200) -> dict[str, float]:
    """Milliseconds per call of each step hpsearch's loop adds to Optuna's, on a study of 50
    trials."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    from hpsearch.storage import count_trials
    from hpsearch.study import budget_verdict

    parsed = resolve_storage_url(url)
    storage = open_storage(parsed)
    apply_heartbeat(storage, spec.heartbeat)
    name = f"parts-{uuid.uuid4().hex[:8]}"
    study, _ = open_study(storage, name, spec)
    for _ in range(50):
        trial = study.ask()
        _noop(trial, spec)
        study.tell(trial, 0.0)
    lock, trial = StudyLock(parsed, name), study.ask()

    def heartbeat() -> None:
        with get_heartbeat_thread(trial._trial_id, storage):
            pass

    steps = {
        "study lock, taken and released": lambda: (lock.acquire(), lock.release()),
        "budget check while trials < budget (one COUNT)": lambda: count_trials(study) < 10**6,
        "budget check near the end (reads the study's trials)": lambda: budget_verdict(
            study.get_trials(deepcopy=False), 1
        ),
        "trial record (4 attributes, one commit)": lambda: record_start(trial, 0, "cpu"),
        "heartbeat thread (first beat written at start)": heartbeat,
        "stale-trial check (at most once per interval)": lambda: optuna.storages.fail_stale_trials(
            study
        ),
    }
    timings = {}
    for label, step in steps.items():
        started = time.perf_counter()
        for _ in range(n_calls):
            step()
        timings[label] = (time.perf_counter() - started) / n_calls * 1000
    optuna.delete_study(study_name=name, storage=storage)
    return timings


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{t * 1000:.1f}" for t in seconds)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--parts", action="store_true", help="also time each step hpsearch adds, alone"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "HPSEARCH_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL URL; an empty one measures SQLite only",
    )
    args = parser.parse_args()
    spec = load_spec_file(REPO / "studies" / "sentiment.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="hpsearch-overhead-"))
    os.environ.setdefault("HPSEARCH_ARTIFACTS", str(scratch / "artifacts"))
    storages = {"SQLite": f"sqlite:///{scratch / 'bench.db'}"}
    if args.postgres:
        storages["PostgreSQL"] = resolve_storage_url(args.postgres).render_as_string(
            hide_password=False
        )
    print(f"{args.n_trials} trials a run, median of {args.repeats} runs\n")
    print(
        "| storage | bare study.optimize (ms/trial): runs, median "
        "| hpsearch run_trials (ms/trial): runs, median | overhead of the medians |"
    )
    print("| --- | --- | --- | --- |")
    for label, url in storages.items():
        bare_times, hp_times = [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both sides alike
            bare_times.append(bare(url, spec, args.n_trials))
            hp_times.append(hpsearch(url, spec, args.n_trials))
        b, h = statistics.median(bare_times), statistics.median(hp_times)
        print(
            f"| {label} | {_runs(bare_times)}; {b * 1000:.1f} "
            f"| {_runs(hp_times)}; {h * 1000:.1f} | {100 * (h / b - 1):+.1f}% |",
            flush=True,
        )
    if args.parts:
        measured = {label: parts(url, spec) for label, url in storages.items()}
        print("\n| step hpsearch adds (ms per call) | " + " | ".join(measured) + " |")
        print("| --- |" + " --- |" * len(measured))
        for step in next(iter(measured.values())):
            print(f"| {step} | " + " | ".join(f"{m[step]:.2f}" for m in measured.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
