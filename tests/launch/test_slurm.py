"""cluster/slurm/hpsearch-worker.sbatch: run directly with bash (its refusals, the command it runs)
and on a real SLURM cluster (an array of workers completing a study on PostgreSQL; SIGINT reaching
a worker's trial, as `--signal=INT@120` sends it before the time limit).

The cluster tests need a SLURM node on this host (tools/slurm-cluster.sh starts one) and
HPSEARCH_TEST_POSTGRES. .ci/run starts the node and sets HPSEARCH_TEST_SLURM=1, and then a node
that is not up fails the tests rather than skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import n_spent, open_study
from tests.conftest import REPO, run_hpsearch, write_spec

SCRIPT = REPO / "cluster" / "slurm" / "hpsearch-worker.sbatch"
NODE = socket.gethostname().split(".")[0]
# The node has no GPU and 2 CPUs: each worker gets one CPU and no GRES.
TEST_RESOURCES = ["--gres=none", "--cpus-per-task=1", f"--nodelist={NODE}"]
JOB_TIMEOUT_S = 300


def run_script(env: dict[str, str], path_dirs: list[Path] = ()) -> subprocess.CompletedProcess:
    """The script as bash runs it outside any job, with only `env` (and PATH) set."""
    path = os.pathsep.join([*map(str, path_dirs), os.environ["PATH"]])
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"HPSEARCH_STORAGE": "postgresql://u@db:5432/hp"}, "HPSEARCH_STUDY"),
        ({"HPSEARCH_STUDY": "sentiment"}, "HPSEARCH_STORAGE"),
    ],
)
def test_the_script_refuses_a_missing_study_or_storage(env, missing):
    result = run_script(env)
    # One line naming what is missing, exit code 2, nothing started.
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        f"error: {missing} is not set"
    )
    assert result.stdout == ""


@pytest.fixture
def fake_srun(tmp_path) -> Path:
    """An `srun` that prints what it was asked to run, and the threads hpsearch would use."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text('#!/bin/sh\necho "$@"\necho "HPSEARCH_THREADS=$HPSEARCH_THREADS"\n')
    srun.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("slurm_env", "gpus_flag"),
    [
        ({}, None),  # a CPU partition
        ({"SLURM_GPUS_ON_NODE": "1"}, None),  # the default, --gres=gpu:1
        ({"SLURM_GPUS_ON_NODE": "4"}, "--gpus-per-trial 4"),  # --gres=gpu:4
        ({"SLURM_GPUS_ON_NODE": "4", "HPSEARCH_GPUS_PER_TRIAL": "2"}, "--gpus-per-trial 2"),
    ],
)
def test_the_script_starts_one_worker_step_with_its_cpus_and_gpus(fake_srun, slurm_env, gpus_flag):
    env = {
        "HPSEARCH_STUDY": "sentiment",
        "HPSEARCH_STORAGE": "postgresql://u@db:5432/hp",
        "HPSEARCH_STORAGE_PASSWORD_FILE": "/home/u/.pw",
        "SLURM_CPUS_PER_TASK": "6",
        **slurm_env,
    }
    result = run_script(env, [fake_srun])
    assert result.returncode == 0, result.stderr
    command, threads = result.stdout.splitlines()
    # One task with the job's CPUs, torch threads to match; the storage stays in the environment.
    expected = "--ntasks=1 --cpus-per-task=6 hpsearch worker --study sentiment"
    assert command == expected + (f" {gpus_flag}" if gpus_flag else "")
    assert threads == "HPSEARCH_THREADS=6"


def test_the_script_refuses_a_gpu_count_that_is_not_a_number(fake_srun):
    env = {
        "HPSEARCH_STUDY": "s",
        "HPSEARCH_STORAGE": "postgresql://u@db/hp",
        "HPSEARCH_GPUS_PER_TRIAL": "two",
    }
    result = run_script(env, [fake_srun])
    assert result.returncode == 2
    assert result.stderr == "error: HPSEARCH_GPUS_PER_TRIAL=two; expected a number of GPUs\n"


def test_the_header_asks_for_one_gpu_and_an_interrupt_before_the_limit():
    header = re.findall(r"^#SBATCH (\S+)", SCRIPT.read_text(), flags=re.MULTILINE)
    assert "--gres=gpu:1" in header
    assert "--signal=INT@120" in header
    assert "--ntasks=1" in header


# --- on a real cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_node() -> str:
    """This host's SLURM node, up; skipped (failed under HPSEARCH_TEST_SLURM) when there is none."""
    state = ""
    if shutil.which("sinfo"):
        try:
            result = subprocess.run(
                ["sinfo", "-h", "-n", NODE, "-o", "%t"],
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            )
            state = result.stdout.strip()
        except subprocess.TimeoutExpired:
            state = "no answer in 15 s"
    if state not in ("idle", "mix", "alloc", "comp"):
        reason = (
            f"no usable SLURM node {NODE!r} on this host (sinfo: {state or 'none'}); "
            "tools/slurm-cluster.sh starts one"
        )
        if os.environ.get("HPSEARCH_TEST_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    return NODE


@pytest.fixture
def postgres(tmp_path) -> tuple[str, Path, str]:
    """(URL without a password, a chmod 600 file holding the password, the password). PostgreSQL
    here trusts local connections, so any password logs in; a made-up one is easy to look for."""
    url = os.environ.get("HPSEARCH_TEST_POSTGRES")
    if not url:
        pytest.skip("HPSEARCH_TEST_POSTGRES is not set")
    parsed = make_url(url)
    password = parsed.password or f"pw-{uuid.uuid4().hex}"
    bare = parsed.set(password=None).render_as_string(hide_password=False)
    password_file = tmp_path / "db-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return bare, password_file, password


@pytest.fixture
def study_name(postgres):
    """A fresh name per test (the server database outlives test runs); deleted after."""
    name = f"test-slurm-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(postgres[0])))
    except KeyError:
        pass


@pytest.fixture
def cheap_spec(tiny_spec):
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["sampler"] = {"name": "random", "seed": 0}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    return tiny_spec


def job_env(postgres, name: str) -> dict[str, str]:
    url, password_file, _ = postgres
    return {
        **os.environ,
        "HPSEARCH_STUDY": name,
        "HPSEARCH_STORAGE": url,
        "HPSEARCH_STORAGE_PASSWORD_FILE": str(password_file),
        "OMP_NUM_THREADS": "1",
        # The venv's `hpsearch`, as a user's activated venv puts it on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def submit(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["sbatch", "--parsable", *TEST_RESOURCES, *args, str(SCRIPT)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_records(job_id: str) -> list[dict[str, str]]:
    """`scontrol show job` of a job (each array task), as key=value dicts; no sacct needed."""
    result = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in result.stdout.splitlines()]


def is_queued(job_id: str) -> bool:
    result = subprocess.run(
        ["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30, check=False
    )
    return bool(result.stdout.strip())


def wait_for(job_id: str, cwd: Path, watch=None) -> list[dict[str, str]]:
    """Poll until the job (all its array tasks) has left the queue; `watch()` runs at each poll."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while is_queued(job_id):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], check=False)
            logs = "".join(p.read_text() for p in cwd.glob("hpsearch-*.out"))
            pytest.fail(f"job {job_id} still queued after {JOB_TIMEOUT_S} s:\n{logs}")
        if watch:
            watch()
        time.sleep(0.5)
    return job_records(job_id)


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


@pytest.mark.slow
def test_an_array_of_two_workers_completes_the_budget(
    slurm_node, postgres, study_name, workdir, cheap_spec
):
    url, _, password = postgres
    env = job_env(postgres, study_name)
    cheap_spec["budget"]["n_trials"] = 4
    write_spec(workdir, "cheap", cheap_spec)
    # On the login node: the study from its spec, the password from the file.
    created = run_hpsearch(
        "create", "--study", "cheap", "--study-name", study_name, cwd=workdir, env=env
    )
    assert created.returncode == 0, created.stderr

    job_id = submit("--array=0-1", cwd=workdir, env=env)
    seen: list[str] = []

    def look_for_the_password():
        # What other users may read: every process's command line and the job's record.
        ps = subprocess.run(
            ["ps", "-eo", "args"], capture_output=True, text=True, check=False
        ).stdout
        scontrol = subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False
        ).stdout
        seen.extend(line for line in ps.splitlines() if study_name in line)
        assert password not in ps and password not in scontrol
        assert url not in scontrol and not [
            line for line in ps.splitlines() if study_name in line and url in line
        ]

    records = wait_for(job_id, workdir, look_for_the_password)
    # The check above did see the workers' command lines while they ran.
    assert any(f"hpsearch worker --study {study_name}" in line for line in seen), seen
    # Both array tasks ended on their own with exit code 0.
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"], records
    assert [(r["JobState"], r["ExitCode"]) for r in records] == [("COMPLETED", "0:0")] * 2
    logs = sorted(workdir.glob(f"hpsearch-{job_id}_*.out"))
    assert len(logs) == 2 and all("trials spent" in p.read_text() for p in logs)

    trials = load(url, study_name).trials
    # Exactly the budget, COMPLETE (the pruner is off), nothing left running ...
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert n_spent(trials) == 4
    # ... shared by the two workers: two processes on this node each ran trials.
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert {t.user_attrs["host"] for t in trials} == {socket.gethostname()}


@pytest.mark.slow
def test_a_worker_of_several_devices_trains_each_trial_on_a_group(
    slurm_node, postgres, study_name, workdir, cheap_spec
):
    # What `--gres=gpu:2` starts (the script passes --gpus-per-trial 2), on CPU: one task whose
    # worker trains each trial as two gloo ranks.
    url, _, _ = postgres
    env = {**job_env(postgres, study_name), "HPSEARCH_GPUS_PER_TRIAL": "2"}
    cheap_spec["budget"]["n_trials"] = 2
    write_spec(workdir, "pair", cheap_spec)
    assert (
        run_hpsearch(
            "create", "--study", "pair", "--study-name", study_name, cwd=workdir, env=env
        ).returncode
        == 0
    )
    records = wait_for(submit("--cpus-per-task=2", cwd=workdir, env=env), workdir)
    logs = "".join(p.read_text() for p in workdir.glob("hpsearch-*.out"))
    assert [(r["JobState"], r["ExitCode"]) for r in records] == [("COMPLETED", "0:0")], logs
    trials = load(url, study_name).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    assert all(t.user_attrs["world_size"] == 2 and len(t.user_attrs["ranks"]) == 2 for t in trials)


@pytest.mark.slow
def test_sigint_from_slurm_interrupts_the_trial_and_a_later_job_reruns_it(
    slurm_node, postgres, study_name, workdir, cheap_spec
):
    url, _, _ = postgres
    env = job_env(postgres, study_name)
    # A trial of ~10 optimizer steps: long enough to be interrupted in the middle.
    cheap_spec["dataset"].update(max_train_samples=160, max_eval_samples=16)
    cheap_spec["budget"]["n_trials"] = 1
    open_study(open_storage(resolve_storage_url(url)), study_name, parse_spec(cheap_spec, "cheap"))

    job_id = submit(cwd=workdir, env=env)
    started = None
    polled = load(url, study_name)  # one storage for every poll: a server's connections
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while started is None:
        assert is_queued(job_id) and time.monotonic() < deadline, job_records(job_id)
        trials = polled.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        started = next((t for t in trials if "pid" in t.user_attrs), None)
        time.sleep(0.2)
    time.sleep(0.5)  # inside its training
    # What --signal=INT@120 does before the time limit: SIGINT to the job's steps.
    subprocess.run(["scancel", "--signal=INT", job_id], check=True, timeout=30)
    [record] = wait_for(job_id, workdir)
    # The worker stopped as on Ctrl-C: exit code 130, its trial recorded as interrupted ...
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "130:0")
    study = load(url, study_name)
    interrupted = study.trials[started.number]
    assert (
        interrupted.state.name == "FAIL" and interrupted.user_attrs["fail_reason"] == "interrupted"
    )
    # ... and queued again, not counted.
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert n_spent(study.trials) == 0

    # A later job re-runs it with the same parameters and seed, and the budget is spent.
    [record] = wait_for(submit(cwd=workdir, env=env), workdir)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0")
    trials = load(url, study_name).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    rerun = trials[1]
    assert rerun.user_attrs["rerun_of"] == interrupted.number
    assert rerun.params == interrupted.params
    assert rerun.user_attrs["seed"] == interrupted.user_attrs["seed"]


def test_sbatch_accepts_the_script(slurm_node, tmp_path):
    result = subprocess.run(
        ["sbatch", "--test-only", *TEST_RESOURCES, "--array=0-7", str(SCRIPT)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # --test-only submits nothing: it says where and when the job would start.
    assert result.returncode == 0, result.stderr
    assert re.search(
        rf"Job \d+ to start at \S+ using \d+ processors on nodes {NODE}", result.stderr
    )
