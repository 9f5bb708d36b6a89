"""A bug of hpsearch met inside a trial stops the worker; a configuration's failure is data.

The faults are injected into real `hpsearch` processes by a test plugin (fault_plugin/, imported at
start-up through PYTHONPATH), so each run goes through the real CLI, Trainer and storage.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hpsearch.errors import ExitCode, is_hpsearch_bug
from hpsearch.study import n_spent
from hpsearch.trial.callback import OptunaPruningCallback
from tests.conftest import run_hpsearch, write_spec

PLUGIN = Path(__file__).parent / "fault_plugin"


def with_fault(fault: str) -> dict:
    """The environment of a process whose real code path `fault` breaks (fault_plugin/)."""
    path = os.pathsep.join(p for p in (str(PLUGIN), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "HPSEARCH_TEST_FAULT": fault}


@pytest.fixture
def cheap_spec(tiny_spec):
    # One optimizer step and one evaluation per trial: real fine-tuning at its cheapest.
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=8)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["sampler"] = {"name": "random", "seed": 0}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    tiny_spec["budget"]["n_trials"] = 3
    return tiny_spec


def load(workdir: Path, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return optuna.load_study(study_name=name, storage=storage)


def test_a_key_error_in_hpsearch_is_a_bug_and_one_in_a_library_is_not():
    callback = OptunaPruningCallback(None, "eval_accuracy", 1)
    with pytest.raises(KeyError) as ours:
        callback.on_evaluate(None, None, None, metrics={"eval_loss": 0.5})
    with pytest.raises(KeyError) as pandas_own:
        pd.DataFrame({"a": [1]})["b"]
    # Raised in hpsearch's code (trial/callback.py): a bug; raised inside pandas: not ours.
    assert is_hpsearch_bug(ours.value)
    assert not is_hpsearch_bug(pandas_own.value)
    # A failed import (a missing package) is a bug wherever it is raised; a ValueError never is.
    with pytest.raises(ImportError) as missing:
        import hpsearch_no_such_package  # noqa: F401
    assert is_hpsearch_bug(missing.value)
    with pytest.raises(ImportError) as missing_name:
        from hpsearch import no_such_name  # noqa: F401
    assert is_hpsearch_bug(missing_name.value)
    assert not is_hpsearch_bug(ValueError("learning_rate must be positive"))
    # A library's own refusal of an option this install lacks a package for is the configuration's
    # failure (the message transformers gives for an 8-bit optimizer without bitsandbytes).
    assert not is_hpsearch_bug(ImportError("You need to install `bitsandbytes` in order to use"))


@pytest.mark.slow
def test_a_bug_in_hpsearch_stops_the_run_after_one_trial(workdir, cheap_spec):
    write_spec(workdir, "buggy", cheap_spec)
    result = run_hpsearch("run", "--study", "buggy", cwd=workdir, env=with_fault("drop-metric"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    # The worker stops with exit 3 (ExitCode.BUG) and one Error line naming the bug.
    assert result.returncode == ExitCode.BUG == 3, result.stderr
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("Error: trial 0 stopped on a bug in hpsearch: KeyError:")
    # Its traceback is on the terminal (the worker's log), down to the callback that raised it.
    assert "Traceback (most recent call last)" in result.stderr
    assert "hpsearch/trial/callback.py" in result.stderr
    trials = load(workdir, "buggy").trials
    # One trial ran, FAIL, with the traceback in its user attributes; the budget is not spent.
    assert [t.state.name for t in trials] == ["FAIL"]
    assert "hpsearch/trial/callback.py" in trials[0].user_attrs["traceback"]
    assert trials[0].user_attrs["fail_reason"] == "bug in hpsearch"
    assert 'KeyError: "evaluation returned no eval_accuracy' in trials[0].user_attrs["traceback"]
    assert n_spent(trials) == 0
    fixed = run_hpsearch("run", "--study", "buggy", "--n-trials", "1", cwd=workdir)
    trials = load(workdir, "buggy").trials
    # Once the bug is gone, the whole budget is there: the storage's own count (in the transaction
    # that creates a trial) leaves the bug's trial out as well.
    assert fixed.returncode == 0, fixed.stderr
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and n_spent(trials) == 1


@pytest.mark.slow
def test_a_supervised_worker_that_meets_a_bug_is_given_up_not_restarted(workdir, cheap_spec):
    from hpsearch.errors import HpsearchError
    from hpsearch.spec import parse_spec
    from hpsearch.storage import STORAGE_ENV, open_storage, resolve_storage_url
    from hpsearch.study import open_study
    from hpsearch.workers import Supervisor, WorkerSlot

    url = f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"
    (workdir / "storage").mkdir()
    storage = open_storage(resolve_storage_url(url))
    open_study(storage, "buggy", parse_spec(cheap_spec, "buggy"))
    messages: list[str] = []
    supervisor = Supervisor(
        [WorkerSlot("cpu0", {})],
        ["worker", "--study", "buggy", "--supervised"],
        {STORAGE_ENV: url, **with_fault("drop-metric")},
        workdir / "logs",
        report=messages.append,
        on_poll=lambda: None,
    )
    with pytest.raises(HpsearchError) as caught:
        supervisor.run()
    # Given up at its first exit, code 3, with its Error line as the reason: no restart.
    assert not [m for m in messages if "restarting" in m]
    assert caught.value.message.startswith(
        "1 of 1 workers gave up (cpu0: exit code 3 (Error: trial 0 stopped on a bug in hpsearch"
    )
    log = (workdir / "logs" / "worker-cpu0.log").read_text()
    # The worker's log keeps the traceback above the one Error line.
    assert "Traceback (most recent call last)" in log and "hpsearch/trial/callback.py" in log
    assert len([line for line in log.splitlines() if line.startswith("Error:")]) == 1
    trials = load(workdir, "buggy").trials
    # One trial, not counted toward the budget.
    assert [t.state.name for t in trials] == ["FAIL"] and n_spent(trials) == 0


@pytest.mark.slow
def test_out_of_memory_and_a_library_type_error_fail_their_trials_and_the_run_goes_on(
    workdir, cheap_spec
):
    cheap_spec["budget"]["n_trials"] = 2
    write_spec(workdir, "failing", cheap_spec)
    result = run_hpsearch(
        "run", "--study", "failing", cwd=workdir, env=with_fault("oom-then-library-error")
    )
    # Failures of a configuration are data: the run ends normally, with no Error line.
    assert result.returncode == 0, result.stderr
    assert "Error:" not in result.stderr
    trials = load(workdir, "failing").trials
    reasons = [t.user_attrs.get("fail_reason") for t in trials]
    # Both trials FAIL with their reasons and count toward the budget; neither has a traceback.
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert reasons == [
        "out of memory (batch size 16, and 8 with accumulation 2 on retry)",
        "TypeError: unsupported operand type(s) for +: 'Tensor' and 'NoneType'",
    ]
    # The first one retried once at half the batch, and says so.
    assert trials[0].user_attrs["oom_retry"] == {"from_batch": 16, "to_batch": 8, "accumulation": 2}
    assert n_spent(trials) == 2
    assert not any("traceback" in t.user_attrs for t in trials)


@pytest.mark.slow
def test_a_bug_in_a_trial_group_stops_the_worker_not_the_next_group(workdir, cheap_spec):
    cheap_spec["resources"] = {"gpus_per_trial": 2}  # two gloo ranks on the CPU, both meet the bug
    write_spec(workdir, "buggy-group", cheap_spec)
    result = run_hpsearch(
        "run", "--study", "buggy-group", cwd=workdir, env=with_fault("drop-metric"), timeout=300
    )
    # The launcher gives up with the bug's exit code rather than start another group.
    assert result.returncode == ExitCode.BUG, result.stderr
    assert "starting a new group" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    # One Error line, the worker's, naming the bug; the ranks' tracebacks are in its log.
    assert len(errors) == 1 and "bug in hpsearch: KeyError" in errors[0], result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    trials = load(workdir, "buggy-group").trials
    # One trial, FAIL with the traceback of the callback that raised, not counted.
    assert [t.state.name for t in trials] == ["FAIL"]
    assert "hpsearch/trial/callback.py" in trials[0].user_attrs["traceback"]
    assert n_spent(trials) == 0
