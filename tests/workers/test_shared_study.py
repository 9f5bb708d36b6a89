"""Several workers on one study, on SQLite and on the real PostgreSQL and MariaDB servers.

The server tests run when HPSEARCH_TEST_POSTGRES / HPSEARCH_TEST_MYSQL are set (.ci/run sets both);
then a server that does not answer fails the test rather than skipping it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest

from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import n_spent, open_study, stored_spec
from tests.conftest import run_hpsearch, write_spec

pytestmark = pytest.mark.slow


def server_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set")
    return url


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


@pytest.fixture
def study_name(request):
    """A fresh name per test (server databases outlive test runs); the study is deleted after."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    urls = []
    yield name, urls
    for url in urls:
        try:
            optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(url)))
        except KeyError:
            pass


@pytest.fixture
def cheap_spec(tiny_spec):
    # One optimizer step and one evaluation per trial: real fine-tuning at its cheapest.
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=8)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["sampler"] = {"name": "random", "seed": 0}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    return tiny_spec


def assert_budget_exact(study: optuna.Study, budget: int) -> None:
    trials = study.trials
    states = [t.state.name for t in trials]
    # Exactly the budget counted, none left running or waiting, and not one trial more.
    assert n_spent(trials) == budget, states
    assert "RUNNING" not in states and "WAITING" not in states
    assert len(trials) == budget, states


@pytest.mark.parametrize("variable", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"])
def test_four_workers_complete_exactly_the_budget(variable, workdir, cheap_spec, study_name):
    url = server_url(variable)
    name, cleanup = study_name
    cleanup.append(url)
    cheap_spec["budget"]["n_trials"] = 8
    write_spec(workdir, "cheap", cheap_spec)
    result = run_hpsearch(
        "run",
        "--study",
        "cheap",
        "--study-name",
        name,
        "--storage",
        url,
        "--workers",
        "4",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting 4 workers" in result.stdout
    study = load(url, name)
    assert_budget_exact(study, 8)
    # The work was shared: trials came from more than one worker process ...
    assert len({t.user_attrs["pid"] for t in study.trials}) >= 2
    # ... and each worker drew its own suggestions: no two trials tried the same learning rate.
    assert len({t.params["learning_rate"] for t in study.trials}) == 8


def test_sqlite_four_workers_and_a_polling_reader_never_lock(workdir, cheap_spec, study_name):
    name, _ = study_name
    cheap_spec["budget"]["n_trials"] = 8
    write_spec(workdir, "cheap", cheap_spec)
    url = f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "run",
            "--study",
            "cheap",
            "--study-name",
            name,
            "--workers",
            "4",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[BaseException] = []
    polls = 0

    def read_like_a_dashboard():
        nonlocal polls
        # A plain RDBStorage, as optuna-dashboard opens it: no hpsearch retries to hide a lock.
        while process.poll() is None:
            try:
                study = optuna.load_study(study_name=name, storage=url)
                study.get_trials(deepcopy=False)
                polls += 1
            except Exception as e:  # noqa: BLE001 - any error once the study exists counts
                if polls:
                    errors.append(e)
            time.sleep(0.05)

    reader = threading.Thread(target=read_like_a_dashboard)
    reader.start()
    stdout, stderr = process.communicate(timeout=600)
    reader.join()
    assert process.returncode == 0, stdout + stderr
    assert errors == []
    assert polls > 10
    logs = "".join(p.read_text() for p in (workdir / "storage" / "logs" / name).glob("*.log"))
    assert "locked" not in logs + stdout + stderr
    assert_budget_exact(load(url, name), 8)


def test_a_killed_worker_trial_is_rerun(workdir, tiny_spec, study_name):
    name, _ = study_name
    # Trials of ~20 optimizer steps on 2 workers: long enough to be killed in the middle.
    tiny_spec["dataset"].update(max_train_samples=320, max_eval_samples=16)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    tiny_spec["budget"]["n_trials"] = 4
    tiny_spec["heartbeat"] = {"interval": 1, "grace_period": 4, "max_retries": 2}
    write_spec(workdir, "kill", tiny_spec)
    url = f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "run",
            "--study",
            "kill",
            "--study-name",
            name,
            "--workers",
            "2",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    storage = open_storage(resolve_storage_url(url))  # one for every poll: a server's connections
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:
            running = []
        victim = next((t for t in running if "pid" in t.user_attrs), None)
        time.sleep(0.2)
    assert victim is not None, "no trial started"
    time.sleep(1.0)  # well inside its training
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stdout + stderr
    # The supervisor saw the death and restarted the worker.
    assert re.search(r"worker cpu\d died with exit code -9.*; restarting \(1/3\)", stdout), stdout

    study = load(url, name)
    killed = study.trials[victim.number]
    # The killed trial was failed by the heartbeat check, as lost ...
    assert killed.state.name == "FAIL" and killed.user_attrs["fail_reason"] == "lost"
    # ... and re-run once with the same parameters and seed.
    reruns = [t for t in study.trials if t.user_attrs.get("rerun_of") == killed.number]
    assert len(reruns) == 1
    assert reruns[0].params == killed.params
    assert reruns[0].user_attrs["seed"] == killed.user_attrs["seed"]
    assert reruns[0].state.name == "COMPLETE"
    # The budget counts the re-run once; nothing is left RUNNING.
    trials = study.trials
    assert n_spent(trials) == 4
    assert [t.state.name for t in trials].count("RUNNING") == 0
    assert len(trials) == 5


def test_worker_joins_with_only_a_storage_url(workdir, cheap_spec, study_name, tmp_path):
    name, cleanup = study_name
    url = os.environ.get("HPSEARCH_TEST_POSTGRES") or f"sqlite:///{tmp_path / 'shared.db'}"
    cleanup.append(url)
    cheap_spec["budget"]["n_trials"] = 3
    # The study exists in the storage, created from a spec on some other machine.
    open_study(open_storage(resolve_storage_url(url)), name, parse_spec(cheap_spec, "elsewhere"))
    machine = tmp_path / "another-machine"
    machine.mkdir()
    assert not (machine / "studies").exists()
    result = run_hpsearch("worker", "--study", name, "--storage", url, cwd=machine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3 spent" in result.stdout
    assert_budget_exact(load(url, name), 3)
    # Joining a finished study says so and exits 0.
    again = run_hpsearch("worker", "--study", name, "--storage", url, cwd=machine)
    assert again.returncode == 0
    assert "has spent its budget of 3 trials" in again.stdout
    # An unknown study is one clear line naming what is there.
    unknown = run_hpsearch("worker", "--study", "nope", "--storage", url, cwd=machine)
    assert unknown.returncode == 1
    assert "Error: no study 'nope' in the storage; studies there:" in unknown.stderr


def test_worker_rides_out_a_database_outage(workdir, cheap_spec, study_name):
    from sqlalchemy.engine import make_url

    from tests.tcp_proxy import CuttableProxy

    server = make_url(server_url("HPSEARCH_TEST_POSTGRES"))
    name, cleanup = study_name
    cleanup.append(server.render_as_string(hide_password=False))
    proxy = CuttableProxy(server.host or "127.0.0.1", server.port or 5432)
    via_proxy = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    cheap_spec["budget"]["n_trials"] = 6
    write_spec(workdir, "outage", cheap_spec)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "run",
            "--study",
            "outage",
            "--study-name",
            name,
            "--storage",
            via_proxy,
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        direct = server.render_as_string(hide_password=False)
        storage = open_storage(resolve_storage_url(direct))  # one for every poll
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                if n_spent(optuna.load_study(study_name=name, storage=storage).trials) >= 1:
                    break
            except KeyError:
                pass
            time.sleep(0.2)
        # The database vanishes for 8 seconds in the middle of the run, then comes back.
        proxy.cut()
        time.sleep(8)
        proxy.restore()
        stdout, stderr = process.communicate(timeout=600)
    finally:
        proxy.close()
        if process.poll() is None:
            process.kill()
    # The worker waited and retried instead of dying, and finished the budget.
    assert process.returncode == 0, stdout + stderr
    assert "storage unreachable" in stderr and "retrying in" in stderr
    assert_budget_exact(load(direct, name), 6)


def test_two_runs_creating_the_same_study_at_once(workdir, cheap_spec):
    cheap_spec["budget"]["n_trials"] = 4
    write_spec(workdir, "twin", cheap_spec)
    # Two terminals, one command each, on a study that does not exist yet.
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "hpsearch.cli", "run", "--study", "twin"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    # Both succeed: one created the study, the other resumed it; together they ran the budget once.
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert_budget_exact(load(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}", "twin"), 4)


@pytest.mark.parametrize("variable", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"])
def test_a_stalled_lock_holder_cannot_overshoot_the_budget(
    variable, workdir, cheap_spec, study_name
):
    """Worker A counts the study's last slot free under the study lock and stalls there (SIGSTOP,
    held in that window by HPSEARCH_TEST_SLOT_DELAY). After the hold limit the server ends A's
    silent lock session and with it the lock; worker B takes it and runs the last trial. A, once
    continued, still believes it holds the lock and a counted slot."""
    url = server_url(variable)
    name, cleanup = study_name
    cleanup.append(url)
    cheap_spec["budget"]["n_trials"] = 1
    write_spec(workdir, "fence", cheap_spec)
    command = [sys.executable, "-m", "hpsearch.cli", "run", "--study", "fence"]
    command += ["--study-name", name, "--storage", url]
    log_a = workdir / "a.log"
    env_a = {**os.environ, "HPSEARCH_LOCK_HOLD_LIMIT": "2", "HPSEARCH_TEST_SLOT_DELAY": "20"}
    with log_a.open("w") as out:
        a = subprocess.Popen(command, cwd=workdir, env=env_a, stdout=out, stderr=out, text=True)
    b = None
    try:
        deadline = time.monotonic() + 300
        while "HPSEARCH_TEST_SLOT_DELAY" not in log_a.read_text():
            assert a.poll() is None and time.monotonic() < deadline, log_a.read_text()
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGSTOP)
        time.sleep(4)  # past the hold limit of 2 s: the server has ended A's lock session
        b = subprocess.Popen(
            command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        stdout_b, stderr_b = b.communicate(timeout=300)
        os.kill(a.pid, signal.SIGCONT)
        a.wait(timeout=300)
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
    output_a = log_a.read_text()
    # B ran the last trial while A was stopped: A's lock had been freed by the server.
    assert b.returncode == 0, stdout_b + stderr_b
    study = load(url, name)
    assert [t.user_attrs.get("pid") for t in study.trials][:1] == [b.pid]
    # A, continued, started no trial beyond the budget: one trial counted, no second row; it
    # stopped cleanly, with no traceback.
    assert_budget_exact(study, 1)
    assert a.returncode == 0, output_a
    assert "Traceback" not in output_a


def _sessions_of(pid: int, connection) -> set[int]:
    """The client ports of the database sessions that process `pid` holds now."""
    import psutil
    import sqlalchemy

    try:
        ports = {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr}
    except psutil.Error:
        return set()
    rows = connection.execute(
        sqlalchemy.text(
            "SELECT client_port FROM pg_stat_activity WHERE datname = current_database()"
        )
    )
    return {port for (port,) in rows if port in ports}


def test_a_real_worker_keeps_three_postgres_sessions(workdir, cheap_spec, study_name):
    import sqlalchemy

    url = server_url("HPSEARCH_TEST_POSTGRES")
    name, cleanup = study_name
    cleanup.append(url)
    cheap_spec["budget"]["n_trials"] = 2  # the second trial starts after a best model was kept
    write_spec(workdir, "cheap", cheap_spec)
    created = run_hpsearch(
        "create", "--study", "cheap", "--study-name", name, "--storage", url, cwd=workdir
    )
    assert created.returncode == 0, created.stderr
    # The run brings a change it records (in the storage's own transaction, no session more).
    cheap_spec["heartbeat"] = {"interval": 5}
    write_spec(workdir, "cheap", cheap_spec)
    worker = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "run", "--study", "cheap", "--study-name", name],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_STORAGE": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    peak = 0
    watcher = sqlalchemy.create_engine(resolve_storage_url(url))
    with watcher.connect() as connection:
        while worker.poll() is None:
            now = _sessions_of(worker.pid, connection)
            seen |= now
            peak = max(peak, len(now))
            connection.commit()  # the next query sees pg_stat_activity afresh
            time.sleep(0.05)
    watcher.dispose()
    out, err = worker.communicate()
    # The worker took the change and ran its trials.
    assert worker.returncode == 0, err
    assert "stored spec updated: heartbeat.interval: 10 -> 5" in out
    assert n_spent(load(url, name).trials) == 2
    # Three sessions: the storage's two (the trial and its heartbeat thread) and one for the study
    # lock; never more, at no moment of the run.
    assert peak == 3, f"peak {peak} sessions, client ports seen {sorted(seen)}"
    assert len(seen) == 3, f"client ports seen {sorted(seen)}"


def test_supervised_workers_stop_at_the_runs_timeout_which_is_not_stored(workdir, cheap_spec):
    cheap_spec["budget"]["n_trials"] = 200  # far more than the deadline leaves time for
    write_spec(workdir, "cheap", cheap_spec)
    started = time.monotonic()
    result = run_hpsearch(
        "run", "--study", "cheap", "--workers", "2", "--timeout", "25", cwd=workdir, timeout=500
    )
    elapsed = time.monotonic() - started
    # The run ended at its deadline (each worker told the seconds left), the budget unspent.
    assert result.returncode == 0, result.stderr
    study = load("sqlite:///storage/hpsearch.db", "cheap")
    assert 0 < n_spent(study.trials) < 200
    assert elapsed < 250, f"the run took {elapsed:.0f} s"
    # The deadline was this run's: the stored spec has no timeout for a later worker to inherit.
    stored = open_storage(resolve_storage_url("sqlite:///storage/hpsearch.db"))
    assert stored_spec(stored, "cheap").budget.timeout is None
