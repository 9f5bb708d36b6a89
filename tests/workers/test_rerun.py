"""A lost or interrupted trial is re-run once, and its re-run starts clean, with real processes.

Three parties may end a trial whose worker stops: the worker's own Ctrl-C handler, and the
heartbeat's stale-trial sweep that any worker runs (here the test runs it, through hpsearch's own
storage, as a worker's loop does). Whatever the order of Ctrl-C, SIGKILL, SIGSTOP and the sweep, the
trial ends FAIL with one reason and has exactly one re-run, which carries its parameters, its seed
and a `rerun_of` link, and none of the dead trial's history (pruner rungs, group, host, metrics,
intermediate values). Resuming then spends exactly the budget.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import optuna
import pytest

from hpsearch.spec import parse_spec
from hpsearch.storage import apply_heartbeat, open_storage, resolve_storage_url
from hpsearch.study import FAIL_REASON_ATTR, INTERRUPTED, n_spent
from tests.conftest import run_hpsearch, write_spec
from tests.workers.test_interrupt import HPSEARCH_WITH_CTRL_C

pytestmark = pytest.mark.slow

GRACE_PERIOD_S = 3


@pytest.fixture
def rung_spec(tiny_spec):
    """One trial of 20 optimizer steps, evaluated every 2 steps by successive halving, which records
    a `completed_rung_*` system attribute at each evaluation: history a re-run must not inherit."""
    tiny_spec["dataset"].update(max_train_samples=320, max_eval_samples=8)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["pruner"] = {"name": "successive_halving", "evals_per_epoch": 10, "min_resource": 1}
    tiny_spec["budget"]["n_trials"] = 1
    tiny_spec["heartbeat"] = {"interval": 1, "grace_period": GRACE_PERIOD_S}
    return tiny_spec


def start_run(workdir, cache_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [*HPSEARCH_WITH_CTRL_C, "run", "--study", "rerun"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def database(workdir):
    return workdir / "storage" / "hpsearch.db"


def wait_for_a_rung(workdir, process, timeout: float = 300.0) -> int:
    """The pid of the process training trial 0, once the pruner has recorded its first rung."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if database(workdir).exists():
            with sqlite3.connect(database(workdir), timeout=30) as db:
                try:
                    row = db.execute(
                        "select a.value_json from trials t "
                        "join trial_user_attributes a on a.trial_id = t.trial_id and a.key = 'pid' "
                        "join trial_system_attributes r on r.trial_id = t.trial_id "
                        "and r.key like 'completed_rung_%' "
                        "where t.state = 'RUNNING' and t.number = 0"
                    ).fetchone()
                except sqlite3.OperationalError:  # tables not created yet
                    row = None
            if row is not None:
                return int(row[0])
        time.sleep(0.1)
    raise AssertionError("trial 0 reported no evaluation")


def trial_states(workdir) -> list[str]:
    with sqlite3.connect(database(workdir), timeout=30) as db:
        return [s for (s,) in db.execute("select state from trials order by number")]


def sweep(workdir, spec: dict) -> None:
    """The stale-trial sweep a worker runs before each trial, through hpsearch's storage."""
    storage = open_storage(resolve_storage_url(f"sqlite:///{database(workdir)}"))
    apply_heartbeat(storage, parse_spec(spec, "rerun").heartbeat)
    optuna.storages.fail_stale_trials(optuna.load_study(study_name="rerun", storage=storage))


def stop_past_the_grace_period_and_sweep(workdir, spec: dict, pid: int) -> None:
    """Stop the worker (SIGSTOP: a suspended job, a frozen VM) past the grace period, then sweep:
    the sweep takes its trial for lost, fails it and queues its re-run."""
    os.kill(pid, signal.SIGSTOP)
    time.sleep(GRACE_PERIOD_S + 1.5)
    sweep(workdir, spec)


def kill_past_the_grace_period_and_sweep(workdir, spec: dict, process, pid: int) -> None:
    """kill -9 the worker (a lost node), wait out the grace period, then sweep: the sweep takes its
    trial for lost, fails it and queues its re-run."""
    os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)
    time.sleep(GRACE_PERIOD_S + 1.5)
    sweep(workdir, spec)


def trials_of(workdir) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{database(workdir)}")
    return optuna.load_study(study_name="rerun", storage=storage).trials


def assert_one_clean_rerun(workdir, reason: str) -> None:
    trials = trials_of(workdir)
    dead, reruns = trials[0], [t for t in trials if t.state.name == "WAITING"]
    # The dead trial ended FAIL with the reason of whoever ended it first, after at least one rung.
    assert dead.state.name == "FAIL" and dead.user_attrs[FAIL_REASON_ATTR] == reason
    assert any(k.startswith("completed_rung_") for k in dead.system_attrs), dead.system_attrs
    # Exactly one re-run, and no other trial: nobody ended it a second time.
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"], [t.state for t in trials]
    rerun = reruns[0]
    # The re-run carries the dead trial's parameters (fixed, as enqueue_trial fixes them), its seed
    # and a link to it, and nothing else: no pruner rung, group, host or metrics, no evaluations.
    assert rerun.user_attrs == {"seed": dead.user_attrs["seed"], "rerun_of": 0}
    assert rerun.system_attrs == {"fixed_params": dead.params}
    assert rerun.intermediate_values == {}


def assert_resume_spends_the_budget_once(workdir) -> None:
    resumed = run_hpsearch("run", "--study", "rerun", cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = trials_of(workdir)
    states = [t.state.name for t in trials]
    # The re-run completed in the dead trial's place: the budget of 1 is spent exactly once, no
    # trial is left RUNNING or WAITING, and no third trial was started.
    assert n_spent(trials) == 1, states
    assert states == ["FAIL", "COMPLETE"], states
    assert trials[1].params == trials[0].params


def test_sigkill_then_sweep_reruns_once_and_clean(workdir, cache_dir, rung_spec):
    write_spec(workdir, "rerun", rung_spec)
    process = start_run(workdir, cache_dir)
    try:
        pid = wait_for_a_rung(workdir, process)
        kill_past_the_grace_period_and_sweep(workdir, rung_spec, process, pid)
    finally:
        if process.poll() is None:
            process.kill()
    sweep(workdir, rung_spec)  # a second worker's sweep a moment later finds nothing to do
    assert_one_clean_rerun(workdir, "lost")
    assert_resume_spends_the_budget_once(workdir)


def test_ctrl_c_then_sigkill_then_sweep_reruns_once(workdir, cache_dir, rung_spec):
    write_spec(workdir, "rerun", rung_spec)
    process = start_run(workdir, cache_dir)
    try:
        pid = wait_for_a_rung(workdir, process)
        process.send_signal(signal.SIGINT)
        # SIGKILL as soon as Ctrl-C's recording shows in the database (a re-run queued, or the trial
        # no longer RUNNING): the moment at which a second recording could still follow.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and trial_states(workdir) == ["RUNNING"]:
            time.sleep(0.002)
        kill_past_the_grace_period_and_sweep(workdir, rung_spec, process, pid)
    finally:
        if process.poll() is None:
            process.kill()
    assert_one_clean_rerun(workdir, INTERRUPTED)
    assert_resume_spends_the_budget_once(workdir)


def test_sweep_of_a_stopped_worker_then_ctrl_c_reruns_once(workdir, cache_dir, rung_spec):
    write_spec(workdir, "rerun", rung_spec)
    process = start_run(workdir, cache_dir)
    try:
        pid = wait_for_a_rung(workdir, process)
        stop_past_the_grace_period_and_sweep(workdir, rung_spec, pid)
        # ... then the worker wakes up and is interrupted: it must not queue a second re-run.
        os.kill(pid, signal.SIGCONT)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
    # The run stops as on any Ctrl-C: exit 130, no traceback.
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert_one_clean_rerun(workdir, "lost")
    assert_resume_spends_the_budget_once(workdir)


def test_a_stopped_worker_woken_after_the_sweep_lets_its_trial_go_and_goes_on(
    workdir, cache_dir, rung_spec
):
    write_spec(workdir, "rerun", rung_spec)
    process = start_run(workdir, cache_dir)
    try:
        pid = wait_for_a_rung(workdir, process)
        stop_past_the_grace_period_and_sweep(workdir, rung_spec, pid)
        # ... then it simply wakes up: nobody interrupts it.
        os.kill(pid, signal.SIGCONT)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
    # The worker lets go of the trial it no longer owns, says so in one line, and goes on: it runs
    # the queued re-run itself and ends the budget as usual (exit 0, no traceback).
    assert process.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert "trial 0 was ended as lost while this worker was stopped" in stdout + stderr
    trials = trials_of(workdir)
    states = [t.state.name for t in trials]
    # One re-run, which completed in the lost trial's place with its parameters: the budget of 1
    # is spent exactly once.
    assert states == ["FAIL", "COMPLETE"], states
    assert trials[0].user_attrs[FAIL_REASON_ATTR] == "lost"
    assert trials[1].user_attrs["rerun_of"] == 0 and trials[1].params == trials[0].params
    assert n_spent(trials) == 1
