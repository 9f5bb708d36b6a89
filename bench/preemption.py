"""Preemption: the work a kill -9 mid-trial loses with and without checkpoints, and what a
checkpoint costs, on the default study's shape (studies/sentiment.yaml).

One configuration of the default study (its model, data caps and evaluation schedule; a fixed
learning rate, batch 16, 2 epochs: 4 evaluations) is trained four ways, each a real `hpsearch run`
in a fresh directory:

- uninterrupted, `checkpoint: false` and `checkpoint: {every: 1}`: training seconds, and the
  checkpoints' cost (seconds per save, MB per checkpoint, recorded by the trial);
- killed (SIGKILL) as soon as the trial has reported its 2nd evaluation (mid-trial, at the worst
  moment for checkpoints: the 2nd evaluation's checkpoint has not landed, so the re-run resumes
  from the 1st), swept as lost, then re-run by the next `hpsearch run`, with and without
  checkpoints: the steps trained twice, and their training time at the uninterrupted pace
  (`seconds_retrained`; the raw seconds are there too, but on a shared machine they say more
  about the other processes than about the kill).

    python bench/preemption.py [--epochs 2] [--max-train-samples 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpsearch.spec import parse_spec
from hpsearch.storage import apply_heartbeat, open_storage, resolve_storage_url

REPO = Path(__file__).resolve().parent.parent
GRACE_PERIOD_S = 3
STUDY = "preemption"


def bench_spec(epochs: int, max_train_samples: int, max_eval_samples: int) -> dict:
    spec = yaml.safe_load((REPO / "studies" / "sentiment.yaml").read_text())
    spec["dataset"].update(max_train_samples=max_train_samples, max_eval_samples=max_eval_samples)
    spec["search_space"] = {"learning_rate": {"choice": [5e-5]}}
    spec["training"].update(
        num_train_epochs=epochs, per_device_train_batch_size=16, warmup_steps=0.1
    )
    spec["pruner"] = {"name": "none", "evals_per_epoch": 2}
    spec["budget"] = {"n_trials": 1}
    spec["heartbeat"] = {"interval": 1, "grace_period": GRACE_PERIOD_S}
    return spec


def hpsearch(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", *args],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def setup(spec: dict, checkpoint) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="hpsearch-preemption-"))
    (workdir / "studies").mkdir()
    spec = {**copy.deepcopy(spec), "checkpoint": checkpoint}
    (workdir / "studies" / f"{STUDY}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return workdir


def trials(workdir: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def run_to_the_end(workdir: Path) -> float:
    started = time.monotonic()
    _, err = hpsearch(workdir, "run", "--study", STUDY).communicate()
    assert "Traceback" not in err, err[-3000:]
    return time.monotonic() - started


def kill_at_second_evaluation(workdir: Path) -> float:
    """SIGKILL the worker once trial 0 has reported evaluation 2; the seconds it had trained."""
    process = hpsearch(workdir, "run", "--study", STUDY)
    db = workdir / "storage" / "hpsearch.db"
    while True:
        assert process.poll() is None, process.communicate()
        row = None
        if db.exists():
            with sqlite3.connect(db, timeout=30) as connection:
                try:
                    row = connection.execute(
                        "select a.value_json, t.datetime_start from trials t "
                        "join trial_user_attributes a on a.trial_id = t.trial_id "
                        "and a.key = 'pid' join trial_intermediate_values v "
                        "on v.trial_id = t.trial_id and v.step = 2 where t.state = 'RUNNING'"
                    ).fetchone()
                except sqlite3.OperationalError:
                    pass
        if row is not None:
            break
        time.sleep(0.02)
    os.kill(int(row[0]), signal.SIGKILL)
    process.communicate()
    started = trials(workdir)[0].datetime_start.timestamp()
    return time.time() - started


def sweep(workdir: Path, spec: dict) -> None:
    time.sleep(GRACE_PERIOD_S + 1.5)
    url = resolve_storage_url(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    storage = open_storage(url)
    apply_heartbeat(storage, parse_spec(spec, STUDY).heartbeat)
    optuna.storages.fail_stale_trials(optuna.load_study(study_name=STUDY, storage=storage))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-samples", type=int, default=2000)
    parser.add_argument("--max-eval-samples", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    spec = bench_spec(options.epochs, options.max_train_samples, options.max_eval_samples)
    results, workdirs = {}, []
    for name, checkpoint in (("without", False), ("with", {"every": 1})):
        workdir = setup(spec, checkpoint)
        workdirs.append(workdir)
        run_to_the_end(workdir)
        (straight,) = trials(workdir)
        results[f"uninterrupted {name}"] = {
            "train_seconds": straight.user_attrs["train_seconds"],
            "n_steps": straight.user_attrs["n_steps"],
            "value": straight.value,
            **{k: v for k, v in straight.user_attrs.items() if k.startswith(("n_check", "check"))},
        }
        print(json.dumps({f"uninterrupted {name}": results[f"uninterrupted {name}"]}), flush=True)
    for name, checkpoint in (("without", False), ("with", {"every": 1})):
        workdir = setup(spec, checkpoint)
        workdirs.append(workdir)
        trained_before_kill = kill_at_second_evaluation(workdir)
        sweep(workdir, spec)
        run_to_the_end(workdir)
        _, rerun = trials(workdir)
        n_steps = rerun.user_attrs["n_steps"]
        resumed = rerun.user_attrs.get("resumed_from_step", 0)
        second_evaluation = round(2 * n_steps / (2 * options.epochs))
        uninterrupted = results[f"uninterrupted {name}"]["train_seconds"]
        results[f"killed {name}"] = {
            "killed_after_step": second_evaluation,
            "resumed_from_step": resumed,
            "steps_retrained": second_evaluation - resumed,
            "seconds_until_kill": round(trained_before_kill, 1),
            "rerun_train_seconds": rerun.user_attrs["train_seconds"],
            # The training time of the steps trained twice, at the uninterrupted run's pace.
            "seconds_retrained": round((second_evaluation - resumed) * uninterrupted / n_steps, 1),
            "value": rerun.value,
            "value_uninterrupted": results[f"uninterrupted {name}"]["value"],
        }
        print(json.dumps({f"killed {name}": results[f"killed {name}"]}), flush=True)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
