"""No two sampling processes of a study draw alike: each process start takes its own start number
from the storage and seeds its sampler with it (two hosts' workers, a restarted worker, a resumed
study), while a lone run from scratch keeps the spec's seed and draws as it always did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import SAMPLER_SEED_ATTR, START_ATTR, open_study
from tests.conftest import run_hpsearch, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def random_spec(tiny_spec):
    # One optimizer step and one evaluation per trial, drawn by the random sampler from a space
    # where two independent draws never coincide.
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=8)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["sampler"] = {"name": "random", "seed": 0}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    return tiny_spec


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


def drawn(study: optuna.Study) -> list[float]:
    """The learning rates the sampler drew, trial by trial (a re-run repeats its original's on
    purpose, and is left out)."""
    return [
        t.params["learning_rate"]
        for t in study.trials
        if "learning_rate" in t.params
        and "failed_trial" not in t.system_attrs
        and "rerun_of" not in t.user_attrs
    ]


def test_two_hosts_with_two_workers_each_draw_no_set_twice(workdir, random_spec, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    random_spec["budget"]["n_trials"] = 8
    open_study(open_storage(resolve_storage_url(url)), "shared", parse_spec(random_spec, "t"))
    # Two machines, one command each, started at once: four supervised workers, slots cpu0 and
    # cpu1 on each.
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "hpsearch.cli", "worker", "--study", "shared"]
            + ["--storage", url, "--workers", "2"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    study = load(url, "shared")
    rates = drawn(study)
    # Eight trials, eight different draws.
    assert len(rates) == 8 and len(set(rates)) == 8, rates
    # Each worker process recorded its own start number and seed on its trials.
    starts = {t.user_attrs["pid"]: t.user_attrs[START_ATTR] for t in study.trials}
    assert len(set(starts.values())) == len(starts), starts
    seeds = {t.user_attrs[START_ATTR]: t.user_attrs[SAMPLER_SEED_ATTR] for t in study.trials}
    assert len(set(seeds.values())) == len(seeds), seeds


def test_a_lone_run_repeats_from_scratch_and_draws_anew_when_resumed(workdir, random_spec):
    write_spec(workdir, "lone", random_spec)

    def run(storage: str, n_trials: int) -> optuna.Study:
        result = run_hpsearch(
            "run", "--study", "lone", "--storage", storage, "--n-trials", str(n_trials), cwd=workdir
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return load(storage, "lone")

    first, second = (f"sqlite:///{workdir / name}" for name in ("first.db", "second.db"))
    once, again = run(first, 2), run(second, 2)
    # The same command on two fresh storages draws the same parameters ...
    assert drawn(once) == drawn(again)
    # ... the spec's seed, as start 0 of the study.
    assert {(t.user_attrs[START_ATTR], t.user_attrs[SAMPLER_SEED_ATTR]) for t in once.trials} == {
        (0, 0)
    }
    # Resumed with a larger budget, the study's second run draws new ones under start 1.
    resumed = run(first, 4)
    rates = drawn(resumed)
    assert len(rates) == 4 and len(set(rates)) == 4, rates
    assert [t.user_attrs[START_ATTR] for t in resumed.trials] == [0, 0, 1, 1]


def test_a_worker_killed_and_restarted_draws_anew(workdir, random_spec):
    # Trials of ~20 optimizer steps on 2 workers: long enough to be killed in the middle.
    random_spec["dataset"].update(max_train_samples=320, max_eval_samples=16)
    random_spec["budget"]["n_trials"] = 6
    random_spec["heartbeat"] = {"interval": 1, "grace_period": 4, "max_retries": 2}
    write_spec(workdir, "kill", random_spec)
    url = f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "run", "--study", "kill", "--workers", "2"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            running = load(url, "kill").get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:
            running = []
        victim = next((t for t in running if "pid" in t.user_attrs), None)
        time.sleep(0.2)
    assert victim is not None, "no trial started"
    time.sleep(1.0)  # well inside its training
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    # The supervisor restarted the killed worker and the budget was spent.
    assert process.returncode == 0, stdout + stderr
    assert "restarting (1/3)" in stdout, stdout
    study = load(url, "kill")
    # Three worker starts sampled: the two first, and the restarted one, each with its own number.
    starts = {t.user_attrs[START_ATTR] for t in study.trials if START_ATTR in t.user_attrs}
    assert starts == {0, 1, 2}, starts
    # No draw repeats another, the restarted worker's included.
    rates = drawn(study)
    assert len(rates) == len(set(rates)), rates
