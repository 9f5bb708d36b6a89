"""Ctrl-C on a real `hpsearch run`: the running trial ends FAIL 'interrupted' and is re-run on
resume. SIGTERM (kill, systemd, Docker, Kubernetes, SLURM's scancel) stops a run the same way."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest

from hpsearch.study import FAIL_REASON_ATTR, INTERRUPTED
from tests.conftest import run_hpsearch, write_spec

pytestmark = pytest.mark.slow


# `hpsearch` with Python's own Ctrl-C handler, whatever this suite inherited: started in the
# background (`nohup pytest &`), it ignores SIGINT, a child inherits that, and Python then never
# raises KeyboardInterrupt.
HPSEARCH_WITH_CTRL_C = [
    sys.executable,
    "-c",
    (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('hpsearch.cli', run_name='__main__', alter_sys=True)"
    ),
]


def wait_for_running_trial(database, process, n_running: int = 1, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if database.exists():
            with sqlite3.connect(database, timeout=30) as db:
                try:
                    running = db.execute(
                        "select count(*) from trials where state = 'RUNNING'"
                    ).fetchone()[0]
                except sqlite3.OperationalError:  # tables not created yet
                    running = 0
            if running >= n_running:
                return
        time.sleep(0.2)
    raise AssertionError("no trial started running")


def test_ctrl_c_fails_the_trial_and_resume_reruns_it(workdir, tiny_spec, cache_dir):
    # Long enough a trial (25-50 steps, several seconds even in bf16) that the signal lands in the
    # middle of training; the resume trains two of them.
    tiny_spec["dataset"]["max_train_samples"] = 800
    tiny_spec["budget"]["n_trials"] = 2
    write_spec(workdir, "stop", tiny_spec)
    database = workdir / "storage" / "hpsearch.db"
    process = subprocess.Popen(
        [*HPSEARCH_WITH_CTRL_C, "run", "--study", "stop"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_running_trial(database, process)
    time.sleep(2.0)  # into the training loop
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    # The run stops with the conventional exit code for Ctrl-C and says what happens next.
    assert process.returncode == 130, stderr
    assert "re-run when the study resumes" in stdout
    assert "Traceback" not in stderr

    storage = optuna.storages.RDBStorage(f"sqlite:///{database}")
    study = optuna.load_study(study_name="stop", storage=storage)
    interrupted = study.trials[0]
    # Nothing is left RUNNING: the trial is FAIL with its reason, and a copy waits to be re-run.
    assert interrupted.state.name == "FAIL"
    assert interrupted.user_attrs[FAIL_REASON_ATTR] == INTERRUPTED
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    # The copy starts clean: the parameters, the seed and the link to the trial, nothing else.
    waiting = study.trials[1]
    assert waiting.user_attrs == {"seed": interrupted.user_attrs["seed"], "rerun_of": 0}
    assert waiting.system_attrs == {"fixed_params": interrupted.params}
    assert waiting.intermediate_values == {}

    resumed = run_hpsearch("run", "--study", "stop", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    trials = study.trials
    rerun = trials[1]
    # The re-run has the same parameters and seed; the budget of 2 is met without counting the
    # interrupted trial, and nothing is RUNNING.
    assert rerun.params == interrupted.params
    assert rerun.user_attrs["seed"] == interrupted.user_attrs["seed"]
    assert rerun.user_attrs["rerun_of"] == interrupted.number
    assert [t.state.name for t in trials].count("RUNNING") == 0
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 2


def test_sigterm_stops_a_run_as_ctrl_c_does(workdir, tiny_spec, cache_dir):
    tiny_spec["dataset"]["max_train_samples"] = 800
    write_spec(workdir, "stop", tiny_spec)
    database = workdir / "storage" / "hpsearch.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "run", "--study", "stop"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_running_trial(database, process)
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    # Not killed by it (-15): stopped as on Ctrl-C, its trial recorded and queued again.
    assert process.returncode == 130, stderr
    assert "re-run when the study resumes" in stdout and "Traceback" not in stderr
    study = optuna.load_study(
        study_name="stop", storage=optuna.storages.RDBStorage(f"sqlite:///{database}")
    )
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs[FAIL_REASON_ATTR] == INTERRUPTED


@pytest.mark.parametrize("stop", ["ctrl-c", "scancel"])
def test_ctrl_c_stops_every_supervised_worker_cleanly(workdir, tiny_spec, cache_dir, stop):
    tiny_spec["dataset"]["max_train_samples"] = (
        960  # 60 steps: both workers are mid-trial when it lands
    )
    tiny_spec["budget"]["n_trials"] = 4
    write_spec(workdir, "stop", tiny_spec)
    database = workdir / "storage" / "hpsearch.db"
    process = subprocess.Popen(
        [*HPSEARCH_WITH_CTRL_C, "run", "--study", "stop", "--workers", "2"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_running_trial(database, process, n_running=2)
    time.sleep(2.0)
    storage = optuna.storages.RDBStorage(f"sqlite:///{database}")
    workers = [
        t.user_attrs["pid"]
        for t in optuna.load_study(study_name="stop", storage=storage).trials
        if t.state.name == "RUNNING"
    ]
    if stop == "ctrl-c":
        # Ctrl-C reaches the supervisor alone (workers run in other sessions); it forwards it once.
        process.send_signal(signal.SIGINT)
    else:
        # scancel signals every process of the job step at once: each worker gets SIGTERM, then the
        # supervisor's SIGINT, and records its trial once all the same.
        for pid in [process.pid, *workers]:
            os.kill(pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 130, stdout + stderr
    study = optuna.load_study(
        study_name="stop", storage=optuna.storages.RDBStorage(f"sqlite:///{database}")
    )
    states = [t.state.name for t in study.trials]
    # Both running trials ended FAIL 'interrupted', each with a waiting re-run; nothing is RUNNING.
    interrupted = [t for t in study.trials if t.user_attrs.get(FAIL_REASON_ATTR) == INTERRUPTED]
    assert len(interrupted) == 2
    assert "RUNNING" not in states
    assert states.count("WAITING") == 2
    # No worker outlives its supervisor.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (exited, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
