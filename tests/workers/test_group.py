"""Trials on several processes (`--gpus-per-trial 2`), for real: two gloo ranks on the CPU per
trial, started by torch's elastic agent, training one configuration with DDP.

What must hold: both ranks train the parameters rank 0 sampled; a pruned trial stops on both at
the same evaluation; a complete trial's value is every rank's metric; a killed rank fails its trial
with its reason (long before the heartbeat's grace period would) and a new group goes on; Ctrl-C
and SIGTERM leave no rank behind and the trial recorded as interrupted.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
import uuid

import optuna
import pytest
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

from hpsearch.errors import SpecError
from hpsearch.spec import check_trial_group, parse_spec
from hpsearch.study import FAIL_REASON_ATTR, INTERRUPTED
from hpsearch.workers import culprit
from tests.conftest import TINY_SPEC, good_and_bad_search, run_hpsearch, run_study, write_spec
from tests.workers.test_interrupt import HPSEARCH_WITH_CTRL_C
from tests.workers.test_shared_study import load, server_url

pytestmark = pytest.mark.slow


def study_of(workdir, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return optuna.load_study(study_name=name, storage=storage)


def test_both_ranks_train_rank_zeros_parameters_and_agree_on_the_value(workdir, tiny_spec):
    tiny_spec["resources"] = {"gpus_per_trial": 2}  # from the spec, not the flag
    tiny_spec["dataset"]["max_train_samples"] = 96
    result, study = run_study(workdir, "pair", tiny_spec)
    assert "trial   1 COMPLETE" in result.stdout
    # Checkpoints are on by default, and a group keeps none: rank 0 says so, once.
    assert result.stderr.count("the trials of a group (--gpus-per-trial 2) keep no checkpoint") == 1
    # Every trial of the budget is there to check (the loop below checks each of them).
    assert len(study.trials) == tiny_spec["budget"]["n_trials"]
    for trial in study.trials:
        ranks = trial.user_attrs["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        assert (
            len({r["pid"] for r in ranks}) == 2
            and [r["pid"] for r in ranks] == trial.user_attrs["rank_pids"]
        )
        # Both trained what rank 0 sampled, with the same seed, for the same steps ...
        assert ranks[0]["params"] == ranks[1]["params"] == trial.params
        assert ranks[0]["seed"] == ranks[1]["seed"] == trial.user_attrs["seed"]
        assert ranks[0]["steps"] == ranks[1]["steps"] == trial.user_attrs["n_steps"]
        # ... each on half of every batch: one epoch of 96 examples is 96 / (batch x 2) steps.
        batch = trial.params["per_device_train_batch_size"]
        assert trial.user_attrs["n_steps"] == math.ceil(96 / (batch * 2))
        assert trial.user_attrs["effective_batch_size"] == batch * 2
        assert trial.user_attrs["world_size"] == 2 and "2 x cpu" in trial.user_attrs["device"]
        # The trial's value is what rank 0 reported, and every rank measured the same.
        assert trial.state.name == "COMPLETE"
        assert ranks[0]["value"] == ranks[1]["value"] == pytest.approx(trial.value, abs=1e-6)
        assert trial.intermediate_values[max(trial.intermediate_values)] == pytest.approx(
            trial.value
        )


def test_a_pruned_trial_stops_on_every_rank_at_the_same_evaluation(workdir, tiny_spec):
    spec = {**tiny_spec, **good_and_bad_search(3e-4), "resources": {"gpus_per_trial": 2}}
    spec["dataset"]["max_train_samples"] = 128  # 4 steps a rank: the first evaluation is mid-epoch
    _, study = run_study(workdir, "prune", spec)
    good, *bad = study.trials
    assert good.state.name == "COMPLETE" and [t.state.name for t in bad] == ["PRUNED", "PRUNED"]
    for trial in bad:
        ranks = trial.user_attrs["ranks"]
        # Rank 0's decision stopped both, after the first of two evaluations, at the same step.
        assert [r["pruned"] for r in ranks] == [True, True]
        assert [r["evaluations"] for r in ranks] == [1, 1] and list(trial.intermediate_values) == [
            1
        ]
        assert ranks[0]["steps"] == ranks[1]["steps"] < good.user_attrs["n_steps"]


def test_a_killed_rank_fails_its_trial_at_once_and_a_new_group_goes_on(
    workdir, tiny_spec, cache_dir
):
    # Trials long enough (a few hundred steps) that the kill lands in the middle of training.
    tiny_spec["dataset"]["max_train_samples"] = 1500
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 1e-4], "log": True}}
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 8}
    tiny_spec["budget"]["n_trials"] = 3
    grace = 60
    tiny_spec["heartbeat"] = {"interval": 5, "grace_period": grace}
    write_spec(workdir, "kill", tiny_spec)
    process = subprocess.Popen(
        [*HPSEARCH_WITH_CTRL_C, "run", "--study", "kill", "--gpus-per-trial", "2"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = wait_for_group_trial(workdir, process, number=0)
        time.sleep(2.0)  # into the training loop
        os.kill(first.user_attrs["rank_pids"][1], signal.SIGKILL)
        killed_at = time.monotonic()
        failed = wait_for_state(workdir, process, number=0, state="FAIL")
        # The launcher failed it, with the dead rank's reason, well inside the grace period after
        # which the heartbeat check would have (with no reason, and a re-run).
        assert time.monotonic() - killed_at < grace / 2
        assert failed.user_attrs[FAIL_REASON_ATTR] == "rank 1 of 2 was killed by SIGKILL"
        assert failed.user_attrs["failed_rank"] == 1
        # Every process of the broken group is gone: its devices are free.
        assert not any(alive(pid) for pid in first.user_attrs["rank_pids"])
        # A new group takes the next trial; Ctrl-C in the middle of it ends the run cleanly.
        second = wait_for_group_trial(workdir, process, number=1)
        assert set(second.user_attrs["rank_pids"]).isdisjoint(first.user_attrs["rank_pids"])
        time.sleep(5.0)  # well inside the second trial's training
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stdout + stderr
    assert "trial 0 failed: rank 1 of 2 was killed by SIGKILL; starting a new group" in stdout
    # No traceback: rank 1, whose peer stopped under it, prints gloo's message, brackets and all.
    assert "Traceback" not in stderr, stderr
    trials = study_of(workdir, "kill").trials
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs[FAIL_REASON_ATTR] == INTERRUPTED
    # Its re-run waits, with its seed.
    assert trials[2].state.name == "WAITING" and trials[2].user_attrs["rerun_of"] == 1
    assert trials[2].user_attrs["seed"] == trials[1].user_attrs["seed"]
    assert not any(alive(pid) for pid in second.user_attrs["rank_pids"])

    # SIGTERM (scancel, a pod's deletion) stops a group as Ctrl-C does, though the agent stops its
    # ranks with SIGTERM, before rank 0 can record the trial: the launcher records it instead.
    process = subprocess.Popen(
        [*HPSEARCH_WITH_CTRL_C, "run", "--study", "kill", "--gpus-per-trial", "2"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rerun = wait_for_group_trial(workdir, process, number=2)
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stdout + stderr
    trials = study_of(workdir, "kill").trials
    assert trials[2].state.name == "FAIL" and trials[2].user_attrs[FAIL_REASON_ATTR] == INTERRUPTED
    assert trials[3].state.name == "WAITING" and trials[3].user_attrs["rerun_of"] == 2
    assert trials[3].user_attrs["seed"] == trials[2].user_attrs["seed"]
    assert trials[3].system_attrs["fixed_params"] == trials[2].params  # what it will be run with
    # ... and nothing else of the group's trial: no group key, rank pids, rungs or evaluations.
    assert trials[3].user_attrs == {"seed": trials[2].user_attrs["seed"], "rerun_of": 2}
    assert trials[3].system_attrs == {"fixed_params": trials[2].params}
    assert trials[3].intermediate_values == {}
    assert not any(alive(pid) for pid in rerun.user_attrs["rank_pids"])

    # A worker killed outright takes its ranks with it: none is left holding a device.
    process = subprocess.Popen(
        [*HPSEARCH_WITH_CTRL_C, "run", "--study", "kill", "--gpus-per-trial", "2"],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        third = wait_for_group_trial(workdir, process, number=3)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while (
            any(alive(pid) for pid in third.user_attrs["rank_pids"]) and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert not any(alive(pid) for pid in third.user_attrs["rank_pids"])
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture
def postgres_study():
    """The PostgreSQL URL and a fresh study name (the server outlives test runs); deleted after."""
    url, name = server_url("HPSEARCH_TEST_POSTGRES"), f"test-{uuid.uuid4().hex[:10]}"
    yield url, name
    try:
        optuna.delete_study(
            study_name=name, storage=url.replace("postgresql://", "postgresql+psycopg://")
        )
    except KeyError:
        pass


def test_supervised_trial_groups_join_a_study_on_postgresql(workdir, tiny_spec, postgres_study):
    # What a multi-GPU host runs (`worker --gpus all --gpus-per-trial 2`), on CPU: two supervised
    # workers, each a group of two ranks, on one PostgreSQL study created by `hpsearch create`.
    url, name = postgres_study
    tiny_spec["budget"]["n_trials"] = 3
    write_spec(workdir, "groups", tiny_spec)
    created = run_hpsearch(
        "create", "--study", "groups", "--study-name", name, "--storage", url, cwd=workdir
    )
    assert created.returncode == 0, created.stderr
    # The password apart from the URL: the supervisor hands its resolved URL on, and the workers
    # and ranks, which inherit the variable too, must not see a conflict in it.
    joined = run_hpsearch(
        "worker",
        "--study",
        name,
        "--storage",
        url,
        "--workers",
        "2",
        "--gpus-per-trial",
        "2",
        cwd=workdir,
        env={"HPSEARCH_STORAGE_PASSWORD": "pw-apart"},
    )
    assert joined.returncode == 0, joined.stdout + joined.stderr
    trials = load(url, name).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    groups = {t.user_attrs["group"] for t in trials}
    assert groups <= {"cpu0", "cpu1"} and all(t.user_attrs["world_size"] == 2 for t in trials)
    for trial in trials:
        assert (
            trial.user_attrs["ranks"][0]["params"]
            == trial.user_attrs["ranks"][1]["params"]
            == trial.params
        )


def test_gradual_unfreezing_is_refused_on_a_trial_group(workdir, tiny_spec):
    tiny_spec["training"] = {**tiny_spec["training"], "gradual_unfreezing": 1}
    write_spec(workdir, "thaw", tiny_spec)
    result = run_hpsearch("run", "--study", "thaw", "--gpus-per-trial", "2", cwd=workdir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "gradual_unfreezing cannot train on --gpus-per-trial 2" in result.stderr
    assert not (workdir / "storage" / "hpsearch.db").exists() or study_count(workdir) == 0
    with pytest.raises(SpecError):
        check_trial_group(parse_spec({**TINY_SPEC, "training": {"gradual_unfreezing": 1}}, "t"), 2)
    check_trial_group(parse_spec({**TINY_SPEC, "training": {"gradual_unfreezing": 1}}, "t"), None)


def failure(rank: int, exitcode: int) -> ProcessFailure:
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file="<N/A>")


@pytest.mark.parametrize(
    "failures, reasons, expected",
    [
        # Rank 1 killed; rank 0 then saw its peer vanish and was stopped by the agent.
        (
            {1: -9, 0: -15},
            {0: "rank 0 of 2: RuntimeError: [gloo] Read error: Connection reset by peer"},
            (1, -9, "rank 1 of 2 was killed by SIGKILL"),
        ),
        # Rank 1 ran out of memory (its own reason); rank 0 lost its peer.
        (
            {0: 70, 1: 70},
            {
                0: "rank 0 of 2: RuntimeError: [gloo] Connection closed by peer",
                1: "rank 1 of 2: out of memory (batch size 64)",
            },
            (1, 70, "rank 1 of 2: out of memory (batch size 64)"),
        ),
        # A rank that exits on a mistake, with no reason file: its exit code is the reason.
        ({0: 1}, {}, (0, 1, "rank 0 of 2 exited with code 1")),
    ],
    ids=["killed", "own-reason", "exit-code"],
)
def test_the_failure_blamed_is_the_cause_not_its_consequences(
    tmp_path, failures, reasons, expected
):
    for rank, reason in reasons.items():
        (tmp_path / f"rank-{rank}.txt").write_text(reason)
    assert (
        culprit({rank: failure(rank, code) for rank, code in failures.items()}, tmp_path, 2)
        == expected
    )


def wait_for_group_trial(workdir, process, number: int, timeout: float = 240.0):
    """Trial `number` once its group has recorded the ranks' processes and it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        trials = study_trials(workdir, "kill")
        if (
            len(trials) > number
            and "rank_pids" in trials[number].user_attrs
            and trials[number].state.name == "RUNNING"
        ):
            return trials[number]
        time.sleep(0.3)
    raise AssertionError(f"trial {number} did not start on a group")


def wait_for_state(workdir, process, number: int, state: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trial = study_trials(workdir, "kill")[number]
        if trial.state.name == state:
            return trial
        time.sleep(0.2)
    raise AssertionError(f"trial {number} is {trial.state.name}, not {state}")


def study_trials(workdir, name: str) -> list:
    try:
        return study_of(workdir, name).get_trials(deepcopy=False)
    except (KeyError, Exception):  # noqa: BLE001 - the database or study is not there yet
        return []


def study_count(workdir) -> int:
    return len(
        optuna.storages.RDBStorage(
            f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"
        ).get_all_studies()
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) holds no device.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
